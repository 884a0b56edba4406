//! Starts a throw-away PostgreSQL with pgvector from the pinned PyPI wheel, prints its URL,
//! waits for Enter and stops it: `cargo run -p maskid-pgserver --example throwaway`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = maskid_pgserver::Throwaway::start(&maskid_assets::Assets::from_env())?;
    println!("{}", server.url());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}
