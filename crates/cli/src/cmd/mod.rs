//! One module per subcommand.

pub mod align;
pub mod bench;
pub mod bench_g2d;
pub mod demo;
pub mod detect;
pub mod enroll;
pub mod eval;
pub mod export;
pub mod gallery;
pub mod identify;
pub mod mask;
pub mod models;
pub mod prepare;
pub mod train;
pub mod unmask;
pub mod verify;
