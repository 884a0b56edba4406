//! One module per subcommand.

pub mod align;
pub mod bench;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod mask;
pub mod models;
pub mod prepare;
