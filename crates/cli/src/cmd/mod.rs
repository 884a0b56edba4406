//! One module per subcommand.

pub mod align;
pub mod bench;
pub mod calibrate;
pub mod db;
pub mod demo;
pub mod demo_report;
pub mod detect;
pub mod enroll;
pub mod eval;
pub mod eval_mask;
pub mod export;
pub mod gallery;
pub mod identify;
pub mod keys;
pub mod mask;
pub mod models;
pub mod prepare;
pub mod serve;
pub mod train;
pub mod unmask;
pub mod verify;
pub mod watch;
