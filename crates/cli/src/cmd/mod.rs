//! One module per subcommand.

pub mod align;
pub mod bench;
pub mod bench_g2d;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod export;
pub mod mask;
pub mod models;
pub mod prepare;
pub mod train;
pub mod unmask;
