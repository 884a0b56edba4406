//! The PostgreSQL backend: subjects, faces and keys in a database with pgvector; search runs
//! on the server (an HNSW index with cosine distance, or an exact scan), so every process on
//! the database sees every enrolment at once and none keeps an index that can go stale.
//!
//! The gallery's API is blocking (the CLI, the Python bindings and the service's worker
//! threads call it), so the backend drives tokio-postgres on a small runtime of its own.
//! Connections come from a bounded pool; a statement that outlives the timeout is cancelled
//! by the server; when the server goes away, calls fail with [`Error::Unavailable`] and the
//! pool makes new connections once it is back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use maskid_core::Embedding;
use pgvector::Vector;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use crate::backend::Backend;
use crate::names::{subject_metadata, subject_name};
use crate::pg_url::{parse_url, redacted};
use crate::store::mask_state;
use crate::store::sface_space_files;
use crate::{
    ApiKey, Candidate, Check, Duplicate, Enrolment, Error, ExportedFace, ExportedSubject, FaceInfo, IndexKind,
    IndexState, Invalid, Missing, ModelRef, NewFace, Result, Role, Storage, Subject, Unusable, AUTO_SKETCH_FACES,
};
use maskid_core::MaskState;

/// Schema versions, applied in order; `maskid_schema` records which ran.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE subjects (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        metadata text NOT NULL DEFAULT '{}',
        created text NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    );
    CREATE TABLE faces (
        id bigserial PRIMARY KEY,
        subject_id bigint NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
        embedding vector NOT NULL,
        model_id text NOT NULL,
        model_sha256 text NOT NULL,
        source_sha256 text NOT NULL,
        score double precision NOT NULL,
        crop bytea,
        created text NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        UNIQUE (subject_id, source_sha256, model_sha256)
    );
    CREATE INDEX faces_subject ON faces (subject_id);
    CREATE TABLE api_keys (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        role text NOT NULL CHECK (role IN ('read', 'write', 'admin')),
        sha256 text NOT NULL UNIQUE,
        created text NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    );
"#,
    // 2: each face records its model's embedding space (as SQLite's migration 5 does).
    concat!(
        "ALTER TABLE faces ADD COLUMN embedding_space text;",
        "UPDATE faces SET embedding_space = CASE WHEN model_sha256 IN (",
        sface_space_files!(),
        ") THEN 'sface-2021dec' ELSE 'sha256:' || model_sha256 END;",
        "ALTER TABLE faces ALTER COLUMN embedding_space SET NOT NULL;"
    ),
    // 3: each face records whether it wears a mask (as SQLite's migration 6 does).
    "ALTER TABLE faces ADD COLUMN mask text;",
];

/// Advisory locks (transaction-scoped) that serialise what must not run twice at once
/// across processes: migrations, and fixing the gallery's model with its first face.
const MIGRATION_LOCK: i64 = 0x6d61_736b_6964_0001;
const MODEL_LOCK: i64 = 0x6d61_736b_6964_0002;

/// Names of the HNSW indexes: one per embedding length, on `embedding::vector(N)`.
const HNSW_PREFIX: &str = "faces_hnsw_";

/// The oldest pgvector with what maskid uses (HNSW, `vector_cosine_ops`).
const MIN_VECTOR: (u32, u32) = (0, 7);

/// Pool, timeouts and search settings of a PostgreSQL gallery.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections at most (each process; requests beyond wait for one).
    pub max_connections: usize,
    /// How long a call waits for a free connection (or a new one) before
    /// [`Error::Unavailable`].
    pub wait_timeout: Duration,
    /// How long the server lets one statement run before cancelling it.
    pub statement_timeout: Duration,
    /// HNSW search breadth (`hnsw.ef_search`): higher finds the true best more often, slower.
    pub ef_search: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            wait_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            ef_search: 100,
        }
    }
}

pub(crate) struct PgGallery {
    /// The URL without its password, for messages.
    gallery: String,
    pool: Pool,
    /// Dropped without waiting (a gallery may be dropped inside another runtime).
    runtime: Option<tokio::runtime::Runtime>,
    kind: IndexKind,
    ef_search: usize,
    /// The face count the `Auto` search chose by, and when it was read.
    estimate: Mutex<Option<(Instant, usize)>>,
}

impl Drop for PgGallery {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgGallery {
    /// Connects, checks pgvector and applies migrations (`create`), or checks that maskid's
    /// tables are there (reading never creates a gallery).
    pub(crate) fn open(url: &str, options: &PostgresOptions, create: bool) -> Result<Self> {
        let mut config = parse_url(url)?;
        let timeout_ms = options.statement_timeout.as_millis();
        let mut startup = format!("-c statement_timeout={timeout_ms} -c hnsw.ef_search={}", options.ef_search);
        if let Some(theirs) = config.get_options() {
            startup = format!("{theirs} {startup}");
        }
        config.options(&startup).application_name("maskid");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        // Fast recycling: a connection the server closed is noticed as closed and replaced.
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let gallery = redacted(url);
        let bad_pool =
            |e: deadpool_postgres::BuildError| Error::Unavailable { gallery: gallery.clone(), reason: e.to_string() };
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.wait_timeout))
            .recycle_timeout(Some(options.wait_timeout))
            .build()
            .map_err(bad_pool)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("maskid-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::Unavailable { gallery: gallery.clone(), reason: format!("no async runtime: {e}") })?;
        let this = Self {
            gallery,
            pool,
            runtime: Some(runtime),
            kind: IndexKind::Auto,
            ef_search: options.ef_search,
            estimate: Mutex::new(None),
        };
        let me = &this;
        me.run(|mut client| async move { me.migrate(&mut client, create).await })?;
        Ok(this)
    }

    /// Runs `work` with a pooled connection on the backend's runtime.
    fn run<T, F>(&self, work: impl FnOnce(deadpool_postgres::Client) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let runtime = self.runtime.as_ref().expect("BUG: the runtime lives until drop");
        runtime.block_on(async {
            let client = self.pool.get().await.map_err(|e| self.pool_error(e))?;
            work(client).await
        })
    }

    fn pool_error(&self, e: deadpool_postgres::PoolError) -> Error {
        use deadpool_postgres::PoolError as P;
        match e {
            P::Backend(e) => self.error(e),
            P::Timeout(_) => Error::Unavailable {
                gallery: self.gallery.clone(),
                reason: "no database connection within the wait (server down or every pooled connection busy)".into(),
            },
            other => Error::Unavailable { gallery: self.gallery.clone(), reason: other.to_string() },
        }
    }

    /// A tokio-postgres error in the gallery's terms: retryable ones (connection lost,
    /// server shutting down or starting, statement timeout, lock conflicts) are
    /// [`Error::Unavailable`]; a refused login is [`Error::Refused`].
    fn error(&self, e: tokio_postgres::Error) -> Error {
        let gallery = self.gallery.clone();
        let Some(db) = e.as_db_error() else {
            // No server answer: the connection failed, broke or timed out (connect timeouts come
            // as I/O errors of kind TimedOut; tokio-postgres's own timeout kind is raised only by
            // the blocking `postgres` crate), else a bug here.
            let io = std::error::Error::source(&e).is_some_and(|c| c.is::<std::io::Error>());
            if e.is_closed() || io {
                return Error::Unavailable { gallery, reason: describe(&e) };
            }
            return Error::Postgres { gallery, source: e };
        };
        let code = db.code();
        let reason = db.message().to_string();
        if code.code().starts_with("08")
            || [
                &SqlState::ADMIN_SHUTDOWN,
                &SqlState::CRASH_SHUTDOWN,
                &SqlState::CANNOT_CONNECT_NOW,
                &SqlState::QUERY_CANCELED,
                &SqlState::TOO_MANY_CONNECTIONS,
                &SqlState::T_R_SERIALIZATION_FAILURE,
                &SqlState::T_R_DEADLOCK_DETECTED,
                &SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(&code)
        {
            Error::Unavailable { gallery, reason }
        } else if code.code().starts_with("28") || code == &SqlState::UNDEFINED_DATABASE {
            Error::Refused { gallery, reason }
        } else {
            Error::Postgres { gallery, source: e }
        }
    }

    async fn migrate(&self, client: &mut deadpool_postgres::Client, create: bool) -> Result<()> {
        let e = |e| self.error(e);
        let tx = client.transaction().await.map_err(e)?;
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await.map_err(e)?;
        let exists: bool =
            tx.query_one("SELECT to_regclass('maskid_schema') IS NOT NULL", &[]).await.map_err(e)?.get(0);
        if !exists && !create {
            return Err(Error::NoGallery { gallery: self.gallery.clone() });
        }
        self.ensure_vector(&tx).await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS maskid_schema (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(e)?;
        let done: i32 =
            tx.query_one("SELECT coalesce(max(version), 0) FROM maskid_schema", &[]).await.map_err(e)?.get(0);
        let done = done as usize;
        if done > MIGRATIONS.len() {
            let problem = Unusable::NewerSchema { found: done, known: MIGRATIONS.len() };
            return Err(Error::Unusable { gallery: self.gallery.clone(), problem });
        }
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(done) {
            tx.batch_execute(sql).await.map_err(e)?;
            tx.execute("INSERT INTO maskid_schema (version) VALUES ($1)", &[&(version as i32 + 1)]).await.map_err(e)?;
        }
        tx.commit().await.map_err(e)
    }

    /// pgvector, created in the database when the server has it.
    async fn ensure_vector(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
        let e = |e| self.error(e);
        let unusable = |problem| Error::Unusable { gallery: self.gallery.clone(), problem };
        let installed = tx.query_opt("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[]).await;
        let version: String = match installed.map_err(e)? {
            Some(row) => row.get(0),
            None => {
                let available = tx.query_opt("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'", &[]).await;
                if available.map_err(e)?.is_none() {
                    return Err(unusable(Unusable::NoVector));
                }
                tx.batch_execute("SAVEPOINT vector").await.map_err(e)?;
                if let Err(err) = tx.batch_execute("CREATE EXTENSION IF NOT EXISTS vector").await {
                    let reason = err.as_db_error().map_or(err.to_string(), |d| d.message().to_string());
                    return Err(unusable(Unusable::CannotCreateVector { reason }));
                }
                tx.query_one("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[])
                    .await
                    .map_err(e)?
                    .get(0)
            }
        };
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < MIN_VECTOR {
            return Err(unusable(Unusable::OldVector { version }));
        }
        Ok(())
    }

    /// The gallery's model and embedding length, read in `tx`; when the gallery is empty,
    /// after taking the model lock, so that two first faces of different models cannot
    /// both get in.
    async fn model_in(&self, tx: &impl GenericClient) -> Result<Option<(ModelRef, usize)>> {
        let e = |e| self.error(e);
        let sql = "SELECT vector_dims(embedding), model_id, model_sha256, embedding_space FROM faces LIMIT 1";
        let read = |row: Row| (model_ref(&row), row.get::<_, i32>(0) as usize);
        if let Some(row) = tx.query_opt(sql, &[]).await.map_err(e)? {
            return Ok(Some(read(row)));
        }
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({MODEL_LOCK})")).await.map_err(e)?;
        Ok(tx.query_opt(sql, &[]).await.map_err(e)?.map(read))
    }

    /// Checks a face against the gallery's model and length (`None`: the gallery is empty).
    fn check_face(gallery: &Option<(ModelRef, usize)>, model: &ModelRef, len: usize) -> Result<()> {
        ModelRef::admit(gallery.as_ref().map(|(ours, _)| ours), model)?;
        match gallery {
            Some((_, dim)) if *dim != len => Err(Error::Invalid(Invalid::Dimension { expected: *dim, got: len })),
            _ => Ok(()),
        }
    }

    /// The HNSW index for embeddings of length `dim` and no other (an index on another
    /// length would refuse every row); `None` drops them all (before a bulk load).
    async fn set_hnsw_index(&self, tx: &impl GenericClient, dim: Option<usize>) -> Result<()> {
        let e = |e| self.error(e);
        let wanted = dim.map(|d| format!("{HNSW_PREFIX}{d}"));
        let existing = tx
            .query(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'faces' AND indexname LIKE 'faces\\_hnsw\\_%'",
                &[],
            )
            .await
            .map_err(e)?;
        let mut present = false;
        for row in existing {
            let name: String = row.get(0);
            if Some(&name) == wanted.as_ref() {
                present = true;
            } else {
                tx.batch_execute(&format!("DROP INDEX IF EXISTS {name}")).await.map_err(e)?;
            }
        }
        if let (Some(wanted), Some(dim), false) = (wanted, dim, present) {
            // Building on many rows at once needs memory for the graph (the default 64 MB
            // makes a million-face build crawl).
            // Partial: an index build also reads rows just replaced in this transaction, whose
            // old vectors may have another length.
            tx.batch_execute(&format!(
                "SET LOCAL maintenance_work_mem = '1GB'; \
                 CREATE INDEX {wanted} ON faces USING hnsw ((embedding::vector({dim})) vector_cosine_ops) \
                 WHERE vector_dims(embedding) = {dim}"
            ))
            .await
            .map_err(e)?;
        }
        Ok(())
    }

    /// Faces, by the planner's estimate (cheap at any size), refreshed every 10 s: what
    /// `Auto` chooses exact or HNSW search by.
    fn estimated_faces(&self) -> Result<usize> {
        let mut cached = self.estimate.lock().map_err(|_| Error::Poisoned)?;
        if let Some((at, faces)) = *cached {
            if at.elapsed() < Duration::from_secs(10) {
                return Ok(faces);
            }
        }
        // The planner's estimate is 0 (or -1) until the table is first analysed: below 100,000
        // rows, where counting takes milliseconds, count them.
        let sql = "SELECT CASE WHEN reltuples < 100000 THEN (SELECT count(*) FROM faces) ELSE reltuples::bigint END \
                   FROM pg_class WHERE oid = 'faces'::regclass";
        let faces = self.run(|client| async move {
            Ok(client.query_one(sql, &[]).await.map_err(|e| self.error(e))?.get::<_, i64>(0) as usize)
        })?;
        *cached = Some((Instant::now(), faces));
        Ok(faces)
    }

    /// Drops the cached face count after a change to the faces (after, so that a search in
    /// between cannot cache the count from before).
    fn forget_estimate(&self) {
        if let Ok(mut cached) = self.estimate.lock() {
            *cached = None;
        }
    }

    fn approximate(&self) -> Result<bool> {
        Ok(match self.kind {
            IndexKind::Exact => false,
            IndexKind::Sketch => true,
            IndexKind::Auto => self.estimated_faces()? >= AUTO_SKETCH_FACES,
        })
    }

    /// Subjects matching `condition`, by name, the first `limit` of them.
    async fn subjects_where(
        &self,
        client: &impl GenericClient,
        condition: &str,
        limit: Option<usize>,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Subject>> {
        let limit = limit.map_or_else(|| "ALL".to_string(), |l| l.to_string());
        // Names sort by bytes, as in SQLite, whatever the database's collation.
        let sql = format!(
            "SELECT s.id, s.name, s.metadata, s.created, count(f.id) FROM subjects s \
             LEFT JOIN faces f ON f.subject_id = s.id WHERE {condition} GROUP BY s.id ORDER BY s.name COLLATE \"C\" \
             LIMIT {limit}"
        );
        let rows = client.query(&sql, args).await.map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .map(|r| Subject {
                id: r.get(0),
                name: r.get(1),
                metadata: serde_json::from_str(r.get(2)).unwrap_or(serde_json::Value::Null),
                created: r.get(3),
                faces: r.get::<_, i64>(4) as usize,
            })
            .collect())
    }

    /// The subject of that name: its stored form, or exactly as given.
    async fn subject_in(&self, client: &impl GenericClient, name: &str) -> Result<Subject> {
        let stored = subject_name(name).unwrap_or_default();
        self.subjects_where(client, "s.name IN ($1, $2)", None, &[&stored, &name])
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(Missing::Subject { name: name.to_string() }))
    }

    fn unique_violation(e: &tokio_postgres::Error) -> bool {
        e.code() == Some(&SqlState::UNIQUE_VIOLATION)
    }
}

impl Backend for PgGallery {
    fn set_index(&mut self, kind: IndexKind) {
        self.kind = kind;
    }

    fn index_state(&self) -> Result<IndexState> {
        let faces = self.run(|client| async move {
            let row = client.query_one("SELECT count(*) FROM faces", &[]).await.map_err(|e| self.error(e))?;
            Ok(row.get::<_, i64>(0) as usize)
        })?;
        Ok(IndexState { faces, sketched: self.approximate()? })
    }

    fn searched_faces(&self) -> Result<usize> {
        self.estimated_faces()
    }

    fn add_subject(&self, name: &str, metadata: &serde_json::Value) -> Result<Subject> {
        let name = subject_name(name)?;
        let metadata = subject_metadata(metadata)?;
        self.run(|client| async move {
            let sql = "INSERT INTO subjects (name, metadata) VALUES ($1, $2)";
            match client.execute(sql, &[&name, &metadata]).await {
                Ok(_) => self.subject_in(&client, &name).await,
                Err(e) if Self::unique_violation(&e) => Err(Error::Duplicate(Duplicate::Subject { name })),
                Err(e) => Err(self.error(e)),
            }
        })
    }

    fn enroll(&self, name: &str, metadata: &serde_json::Value, face: &NewFace) -> Result<Enrolment> {
        let name = subject_name(name)?;
        let metadata = subject_metadata(metadata)?;
        let values = face.embedding.values();
        let enrolled = self.run(|mut client| async move {
            let e = |e| self.error(e);
            let tx = client.transaction().await.map_err(e)?;
            let gallery = self.model_in(&tx).await?;
            Self::check_face(&gallery, &face.model, values.len())?;
            if gallery.is_none() {
                self.set_hnsw_index(&tx, Some(values.len())).await?;
            }
            let sql =
                "INSERT INTO subjects (name, metadata) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id";
            let created = tx.query_opt(sql, &[&name, &metadata]).await.map_err(e)?;
            let subject_created = created.is_some();
            let subject_id: i64 = match created {
                Some(row) => row.get(0),
                None => tx.query_one("SELECT id FROM subjects WHERE name = $1", &[&name]).await.map_err(e)?.get(0),
            };
            let inserted = tx
                .query_one(
                    "INSERT INTO faces (subject_id, embedding, model_id, model_sha256, embedding_space, source_sha256, \
                     score, crop, mask) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                    &[
                        &subject_id,
                        &Vector::from(values.to_vec()),
                        &face.model.id,
                        &face.model.sha256,
                        &face.model.space,
                        &face.source_sha256,
                        &f64::from(face.score),
                        &face.crop,
                        &face.mask.map(MaskState::name),
                    ],
                )
                .await;
            let face_id: i64 = match inserted {
                Ok(row) => row.get(0),
                Err(err) if Self::unique_violation(&err) => {
                    return Err(Error::Duplicate(Duplicate::Photo { source_sha256: face.source_sha256.clone() }))
                }
                Err(err) => return Err(e(err)),
            };
            let subject = self.subject_in(&tx, &name).await?;
            tx.commit().await.map_err(e)?;
            Ok(Enrolment { face_id, subject, subject_created })
        });
        self.forget_estimate();
        enrolled
    }

    fn remove_subject(&self, name: &str) -> Result<()> {
        let stored = subject_name(name).unwrap_or_default();
        let removed = self.run(|client| async move {
            let sql = "DELETE FROM subjects WHERE name IN ($1, $2)";
            match client.execute(sql, &[&stored, &name]).await.map_err(|e| self.error(e))? {
                0 => Err(Error::NotFound(Missing::Subject { name: name.to_string() })),
                _ => Ok(()),
            }
        });
        self.forget_estimate();
        removed
    }

    fn remove_face(&self, id: i64) -> Result<()> {
        let removed = self.run(|client| async move {
            match client.execute("DELETE FROM faces WHERE id = $1", &[&id]).await.map_err(|e| self.error(e))? {
                0 => Err(Error::NotFound(Missing::Face { id })),
                _ => Ok(()),
            }
        });
        self.forget_estimate();
        removed
    }

    fn identify(&self, probe: &Embedding, top: usize, threshold: f32) -> Result<Vec<Candidate>> {
        if top == 0 {
            return Ok(Vec::new());
        }
        let dim = probe.values().len();
        // Approximate: the nearest faces by the HNSW index (as many as `ef_search` lets
        // through), then each person's best. Exact: every face scored, each person's best.
        let sql = if self.approximate()? {
            format!(
                "SELECT s.name, max(n.similarity)::real AS best FROM \
                 (SELECT subject_id, 1 - (embedding::vector({dim}) <=> $1::vector({dim})) AS similarity FROM faces \
                  WHERE vector_dims(embedding) = {dim} ORDER BY embedding::vector({dim}) <=> $1::vector({dim}) LIMIT $2) n \
                 JOIN subjects s ON s.id = n.subject_id GROUP BY s.name ORDER BY best DESC, s.name LIMIT $3"
            )
        } else {
            "SELECT s.name, b.best FROM \
             (SELECT subject_id, max(1 - (embedding <=> $1))::real AS best FROM faces GROUP BY subject_id \
              ORDER BY best DESC LIMIT $3) b \
             JOIN subjects s ON s.id = b.subject_id WHERE $2::bigint > 0 ORDER BY b.best DESC, s.name"
                .to_string()
        };
        let nearest = (top * 32).min(self.ef_search.max(top)) as i64;
        let probe = Vector::from(probe.values().to_vec());
        self.run(|client| async move {
            let statement = client.prepare_cached(&sql).await.map_err(|e| self.error(e))?;
            let rows = match client.query(&statement, &[&probe, &nearest, &(top as i64)]).await {
                Ok(rows) => rows,
                Err(e) if e.code() == Some(&SqlState::DATA_EXCEPTION) => {
                    // pgvector: "different vector dimensions 128 and 3" / "expected 128 dimensions, not 3".
                    let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                    let expected = message.split(|c: char| !c.is_ascii_digit()).find_map(|n| n.parse().ok());
                    return Err(match expected {
                        Some(expected) => Error::Invalid(Invalid::Dimension { expected, got: dim }),
                        None => self.error(e),
                    });
                }
                Err(e) => return Err(self.error(e)),
            };
            if rows.is_empty() {
                // The approximate search reads only faces of the probe's length.
                let sql = "SELECT vector_dims(embedding) FROM faces LIMIT 1";
                if let Some(row) = client.query_opt(sql, &[]).await.map_err(|e| self.error(e))? {
                    let expected = row.get::<_, i32>(0) as usize;
                    return Err(Error::Invalid(Invalid::Dimension { expected, got: dim }));
                }
            }
            Ok(rows
                .into_iter()
                .map(|r| {
                    let similarity: f32 = r.get(1);
                    Candidate { name: r.get(0), similarity, matched: similarity >= threshold }
                })
                .collect())
        })
    }

    fn subjects(&self) -> Result<Vec<Subject>> {
        self.run(|client| async move { self.subjects_where(&client, "true", None, &[]).await })
    }

    fn subjects_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Subject>> {
        let after = after.unwrap_or("").to_string();
        self.run(|client| async move {
            self.subjects_where(&client, "s.name > $1 COLLATE \"C\"", Some(limit), &[&after]).await
        })
    }

    fn subject_count(&self) -> Result<usize> {
        self.run(|client| async move {
            let row = client.query_one("SELECT count(*) FROM subjects", &[]).await.map_err(|e| self.error(e))?;
            Ok(row.get::<_, i64>(0) as usize)
        })
    }

    fn subject(&self, name: &str) -> Result<Subject> {
        self.run(|client| async move { self.subject_in(&client, name).await })
    }

    fn faces(&self, name: &str) -> Result<Vec<FaceInfo>> {
        self.run(|client| async move {
            let subject = self.subject_in(&client, name).await?;
            let sql =
                "SELECT id, model_id, source_sha256, score, created, mask FROM faces WHERE subject_id = $1 ORDER BY id";
            let rows = client.query(sql, &[&subject.id]).await.map_err(|e| self.error(e))?;
            Ok(rows
                .into_iter()
                .map(|r| FaceInfo {
                    id: r.get(0),
                    model_id: r.get(1),
                    source_sha256: r.get(2),
                    score: r.get(3),
                    mask: mask_state(r.get(5)),
                    created: r.get(4),
                })
                .collect())
        })
    }

    fn model(&self) -> Result<Option<ModelRef>> {
        self.run(|client| async move {
            let sql = "SELECT model_id, model_sha256, embedding_space FROM faces LIMIT 1";
            let row = client.query_opt(sql, &[]).await;
            Ok(row.map_err(|e| self.error(e))?.map(|r| model_ref(&r)))
        })
    }

    fn check(&self) -> Result<Check> {
        self.run(|client| async move {
            let row = client
                .query_one(
                    "SELECT (SELECT count(*) FROM subjects), (SELECT count(*) FROM faces), \
                     (SELECT count(DISTINCT embedding_space) FROM faces), \
                     (SELECT count(DISTINCT vector_dims(embedding)) FROM faces)",
                    &[],
                )
                .await
                .map_err(|e| self.error(e))?;
            let (subjects, faces, models, lengths): (i64, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let mut problems = Vec::new();
            if models > 1 {
                problems.push(format!("faces of {models} embedding spaces"));
            }
            if lengths > 1 {
                problems.push(format!("embeddings of {lengths} lengths"));
            }
            let integrity = if problems.is_empty() { "ok".to_string() } else { problems.join("; ") };
            Ok(Check { integrity, subjects: subjects as usize, faces: faces as usize })
        })
    }

    fn add_key(&self, name: &str, role: Role, secret_sha256: &str) -> Result<()> {
        self.run(|client| async move {
            let sql = "INSERT INTO api_keys (name, role, sha256) VALUES ($1, $2, $3)";
            match client.execute(sql, &[&name, &role.name(), &secret_sha256]).await {
                Ok(_) => Ok(()),
                Err(e) if Self::unique_violation(&e) => {
                    Err(Error::Duplicate(Duplicate::Key { name: name.to_string() }))
                }
                Err(e) => Err(self.error(e)),
            }
        })
    }

    fn key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>> {
        self.run(|client| async move {
            let sql = "SELECT name, role, created FROM api_keys WHERE sha256 = $1";
            let row = client.query_opt(sql, &[&secret_sha256]).await.map_err(|e| self.error(e))?;
            row.map(api_key).transpose()
        })
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        self.run(|client| async move {
            let sql = "SELECT name, role, created FROM api_keys ORDER BY name COLLATE \"C\"";
            let rows = client.query(sql, &[]).await.map_err(|e| self.error(e))?;
            rows.into_iter().map(api_key).collect()
        })
    }

    fn remove_key(&self, name: &str) -> Result<()> {
        self.run(|client| async move {
            match client.execute("DELETE FROM api_keys WHERE name = $1", &[&name]).await.map_err(|e| self.error(e))? {
                0 => Err(Error::NotFound(Missing::Key { name: name.to_string() })),
                _ => Ok(()),
            }
        })
    }

    fn exported(&self) -> Result<(Vec<ExportedSubject>, Vec<ExportedFace>)> {
        self.run(|mut client| async move {
            let e = |e| self.error(e);
            // One snapshot for both reads.
            let tx = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).read_only(true).start().await.map_err(e)?;
            let subjects = tx
                .query("SELECT name, metadata, created FROM subjects ORDER BY name COLLATE \"C\"", &[])
                .await
                .map_err(e)?
                .into_iter()
                .map(|r| ExportedSubject {
                    name: r.get(0),
                    metadata: serde_json::from_str(r.get(1)).unwrap_or(serde_json::Value::Null),
                    created: r.get(2),
                })
                .collect();
            let faces = tx
                .query(
                    "SELECT s.name, f.embedding, f.source_sha256, f.score, f.crop, f.created, f.mask, f.model_id, \
                     f.model_sha256, f.embedding_space FROM faces f JOIN subjects s ON s.id = f.subject_id ORDER BY f.id",
                    &[],
                )
                .await
                .map_err(e)?
                .into_iter()
                .map(|r| ExportedFace {
                    subject: r.get(0),
                    embedding: r.get::<_, Vector>(1).to_vec(),
                    source_sha256: r.get(2),
                    score: r.get(3),
                    crop: r.get(4),
                    created: r.get(5),
                    model: model_ref(&r),
                    mask: mask_state(r.get(6)),
                })
                .collect();
            tx.commit().await.map_err(e)?;
            Ok((subjects, faces))
        })
    }

    fn import(&self, subjects: &[ExportedSubject], faces: &[ExportedFace]) -> Result<(usize, usize)> {
        let names: Vec<String> = subjects.iter().map(|s| subject_name(&s.name)).collect::<Result<_>>()?;
        let face_subjects: Vec<String> = faces.iter().map(|f| subject_name(&f.subject)).collect::<Result<_>>()?;
        let counts = self.run(|mut client| async move {
            let e = |e| self.error(e);
            let tx = client.transaction().await.map_err(e)?;
            let mut gallery = self.model_in(&tx).await?;
            let was_empty = gallery.is_none();
            for f in faces {
                Self::check_face(&gallery, &f.model, f.embedding.len())?;
                gallery.get_or_insert_with(|| (f.model.clone(), f.embedding.len()));
            }
            if was_empty {
                // Rows first, the index after: building it once is far faster than growing it.
                self.set_hnsw_index(&tx, None).await?;
            }
            let metadata: Vec<String> = subjects.iter().map(|s| subject_metadata(&s.metadata)).collect::<Result<_>>()?;
            let created: Vec<&str> = subjects.iter().map(|s| s.created.as_str()).collect();
            tx.execute(
                "INSERT INTO subjects (name, metadata, created) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (name) DO NOTHING",
                &[&names, &metadata, &created],
            )
            .await
            .map_err(e)?;
            // A bulk import may take minutes: no statement timeout for it.
            tx.batch_execute("SET LOCAL statement_timeout = 0").await.map_err(e)?;
            // Faces through a staging table filled by binary COPY (fast at a million rows),
            // then inserted in file order, skipping those already there.
            tx.batch_execute(
                "CREATE TEMP TABLE import_faces (ord bigint, subject text, embedding vector, model_id text, \
                 model_sha256 text, embedding_space text, source_sha256 text, score double precision, crop bytea, created text, mask text) ON COMMIT DROP",
            )
            .await
            .map_err(e)?;
            let vector_type = tx.prepare("SELECT $1::vector").await.map_err(e)?.params()[0].clone();
            use tokio_postgres::types::Type;
            let types = [
                Type::INT8,
                Type::TEXT,
                vector_type,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::FLOAT8,
                Type::BYTEA,
                Type::TEXT,
                Type::TEXT,
            ];
            let sink = tx.copy_in("COPY import_faces FROM STDIN (FORMAT binary)").await.map_err(e)?;
            let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            for (ord, (f, subject)) in faces.iter().zip(&face_subjects).enumerate() {
                let embedding = Vector::from(f.embedding.clone());
                writer
                    .as_mut()
                    .write(&[
                        &(ord as i64),
                        subject,
                        &embedding,
                        &f.model.id,
                        &f.model.sha256,
                        &f.model.space,
                        &f.source_sha256,
                        &f.score,
                        &f.crop,
                        &f.created,
                        &f.mask.map(MaskState::name),
                    ])
                    .await
                    .map_err(e)?;
            }
            writer.finish().await.map_err(e)?;
            let orphan = tx
                .query_opt(
                    "SELECT i.subject FROM import_faces i LEFT JOIN subjects s ON s.name = i.subject WHERE s.id IS NULL LIMIT 1",
                    &[],
                )
                .await
                .map_err(e)?;
            if let Some(row) = orphan {
                return Err(Error::NotFound(Missing::Subject { name: row.get(0) }));
            }
            let added = tx
                .execute(
                    "INSERT INTO faces (subject_id, embedding, model_id, model_sha256, embedding_space, source_sha256, \
                     score, crop, created, mask) SELECT s.id, i.embedding, i.model_id, i.model_sha256, \
                     i.embedding_space, i.source_sha256, i.score, i.crop, i.created, i.mask \
                     FROM import_faces i JOIN subjects s ON s.name = i.subject ORDER BY i.ord ON CONFLICT DO NOTHING",
                    &[],
                )
                .await
                .map_err(e)? as usize;
            if let Some((_, dim)) = gallery {
                self.set_hnsw_index(&tx, Some(dim)).await?;
            }
            tx.commit().await.map_err(e)?;
            // Fresh statistics: `Auto` search goes by the planner's row estimate.
            client.batch_execute("ANALYZE faces").await.map_err(e)?;
            Ok((added, faces.len() - added))
        })?;
        *self.estimate.lock().map_err(|_| Error::Poisoned)? = None;
        Ok(counts)
    }

    fn storage(&self) -> Result<Storage> {
        self.run(|client| async move {
            let row = client
                .query_one(
                    "SELECT pg_total_relation_size('faces'), coalesce((SELECT sum(pg_relation_size(indexname::regclass)) \
                     FROM pg_indexes WHERE tablename = 'faces' AND indexname LIKE 'faces\\_hnsw\\_%'), 0)::bigint",
                    &[],
                )
                .await
                .map_err(|e| self.error(e))?;
            Ok(Storage { bytes: row.get::<_, i64>(0) as u64, search_index_bytes: Some(row.get::<_, i64>(1) as u64) })
        })
    }

    fn crops(&self) -> Result<Vec<(i64, Option<Vec<u8>>)>> {
        self.run(|client| async move {
            let rows = client.query("SELECT id, crop FROM faces ORDER BY id", &[]).await.map_err(|e| self.error(e))?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn replace_embeddings(&self, model: &ModelRef, embeddings: &[(i64, Embedding)]) -> Result<()> {
        self.run(|mut client| async move {
            let e = |e| self.error(e);
            let tx = client.transaction().await.map_err(e)?;
            tx.batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({MODEL_LOCK}); LOCK TABLE faces IN EXCLUSIVE MODE"
            ))
            .await
            .map_err(e)?;
            let faces: i64 = tx.query_one("SELECT count(*) FROM faces", &[]).await.map_err(e)?.get(0);
            if faces as usize != embeddings.len() {
                let changed = Invalid::Changed { embeddings: embeddings.len(), faces: faces as usize };
                return Err(Error::Invalid(changed));
            }
            tx.batch_execute("SET LOCAL statement_timeout = 0").await.map_err(e)?;
            // The old length's index would refuse the new vectors: drop it, rebuild after.
            self.set_hnsw_index(&tx, None).await?;
            let update = tx
                .prepare(
                    "UPDATE faces SET embedding = $1, model_id = $2, model_sha256 = $3, embedding_space = $4 WHERE id = $5",
                )
                .await
                .map_err(e)?;
            for (id, embedding) in embeddings {
                let vector = Vector::from(embedding.values().to_vec());
                tx.execute(&update, &[&vector, &model.id, &model.sha256, &model.space, id]).await.map_err(e)?;
            }
            if let Some((_, embedding)) = embeddings.first() {
                self.set_hnsw_index(&tx, Some(embedding.values().len())).await?;
            }
            tx.commit().await.map_err(e)
        })
    }
}

/// The model of a row whose last three columns are model_id, model_sha256, embedding_space.
fn model_ref(row: &Row) -> ModelRef {
    let n = row.len();
    ModelRef { id: row.get(n - 3), sha256: row.get(n - 2), space: row.get(n - 1) }
}

/// A database made for a benchmark or a test on a server maskid may create databases on
/// (`CREATEDB`), dropped with everything in it when this is dropped.
pub struct ScratchDatabase {
    server: String,
    name: String,
    location: crate::Location,
}

impl ScratchDatabase {
    /// Creates database `name` (which must not exist) on the server of `url`.
    pub fn create(url: &str, name: &str) -> Result<Self> {
        let location = match url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => {
                return Err(Error::Invalid(Invalid::Url { url: redacted(url), reason: "no database in it".into() }))
            }
        };
        admin(url, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(Self { server: url.to_string(), name: name.to_string(), location: crate::Location::Postgres(location) })
    }

    /// The new database.
    pub fn location(&self) -> &crate::Location {
        &self.location
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(e) = admin(&self.server, &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)) {
            eprintln!("maskid: dropping the scratch database {}: {e}", self.name);
        }
    }
}

/// One statement on its own connection (CREATE/DROP DATABASE cannot run in a transaction).
fn admin(url: &str, sql: &str) -> Result<()> {
    let gallery = redacted(url);
    let unavailable = |reason: String| Error::Unavailable { gallery: gallery.clone(), reason };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| unavailable(e.to_string()))?;
    runtime.block_on(async {
        let (client, connection) = parse_url(url)?.connect(NoTls).await.map_err(|e| unavailable(describe(&e)))?;
        let driver = tokio::spawn(connection);
        let done = client.batch_execute(sql).await;
        drop(client);
        let _ = driver.await;
        done.map_err(|e| Error::Postgres { gallery: gallery.clone(), source: e })
    })
}

/// A tokio-postgres error with what it wraps: the server's message and SQLSTATE, or the
/// client's cause (its own text is only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// A row of `api_keys` (name, role, created).
fn api_key(row: Row) -> Result<ApiKey> {
    Ok(ApiKey { name: row.get(0), role: row.get::<_, &str>(1).parse()?, created: row.get(2) })
}
