//! A stage's run folder: the config, atomic checkpoints, resume, `metrics.jsonl` and curves.
//!
//! ```text
//! RUN/<stage>/config.toml      the whole config the stage ran with (G2D's or the detector's)
//!            state.json        step, best validation, SHA-256 of each checkpoint part
//!            <part>-<step>.bpk checkpoint parts (model, optimizer, ...) of that step
//!            best-<step>.bpk   the stage's result: the model at its best validation
//!            metrics.jsonl     one JSON object per logged step or validation
//!            loss.png, validation.png
//! ```
//! A checkpoint is written part by part (write, fsync, rename), then `state.json` is replaced
//! the same way to point at it, then the older parts are deleted: a kill at any moment leaves
//! one complete checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use maskid_assets::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{G2dConfig, Schedule, Stage};
use crate::{Error, Result};

/// A config that stages run with: saved beside their checkpoints and compared on resume.
/// G2D's four stages share [`crate::G2dConfig`]; the detector has its own.
pub trait RunConfig: Sized {
    /// Every key, as TOML (what `config.toml` holds).
    fn to_toml(&self) -> String;
    /// Reads and checks a config file.
    fn load(path: &Path) -> Result<Self>;
    /// The schedule of the stage named `stage`.
    fn stage_schedule(&self, stage: &str) -> &Schedule;
    /// The table of this config's TOML that holds `stage`'s `schedule`.
    fn schedule_table<'a>(toml: &'a mut toml::Table, stage: &str) -> Option<&'a mut toml::Table>;
}

impl RunConfig for G2dConfig {
    fn to_toml(&self) -> String {
        G2dConfig::to_toml(self)
    }

    fn load(path: &Path) -> Result<Self> {
        G2dConfig::load(path)
    }

    fn stage_schedule(&self, stage: &str) -> &Schedule {
        let stage = Stage::parse(stage).expect("BUG: G2D stage folders are named by Stage::name");
        self.schedule(stage)
    }

    fn schedule_table<'a>(toml: &'a mut toml::Table, stage: &str) -> Option<&'a mut toml::Table> {
        toml.get_mut(stage)?.get_mut("schedule")?.as_table_mut()
    }
}

/// What `state.json` records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Optimiser steps done.
    pub step: usize,
    /// Wall-clock seconds spent training, over all sessions.
    pub elapsed_s: f64,
    /// Best validation value so far (higher is better).
    pub best_validation: Option<f64>,
    /// Step of the best validation.
    pub best_step: usize,
    /// SHA-256 of `best-<best_step>.bpk`.
    pub best_sha256: Option<String>,
    /// All steps done.
    pub finished: bool,
    /// SHA-256 of the config the stage runs with.
    pub config_sha256: String,
    /// Fingerprint of the training data (photos and identities).
    pub data_fingerprint: String,
    /// Checkpoint part name -> SHA-256 of `<part>-<step>.bpk`.
    pub parts: Vec<(String, String)>,
}

/// One stage's folder.
#[derive(Debug, Clone)]
pub struct StageDir {
    dir: PathBuf,
    stage: &'static str,
}

impl StageDir {
    /// `run/<stage>`, created.
    pub fn create(run: &Path, stage: &'static str) -> Result<Self> {
        let dir = run.join(stage);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
        Ok(Self { dir, stage })
    }

    /// `run/<stage>` if it holds a finished stage.
    pub fn finished(run: &Path, stage: &'static str) -> Result<(Self, RunState)> {
        let dir = Self { dir: run.join(stage), stage };
        let state = dir.state()?.ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: stage {} has not been trained in this run (train it first: --stage {})",
                dir.dir.display(),
                stage,
                stage
            ))
        })?;
        if !state.finished {
            return Err(Error::Checkpoint(format!(
                "{}: stage {} stopped at step {} before its end: finish it with --stage {} --resume",
                dir.dir.display(),
                stage,
                state.step,
                stage
            )));
        }
        Ok((dir, state))
    }

    /// Puts the finished stage of another run folder into `run` (hard links where the file
    /// system allows, else copies): later stages of `run` then start from it. Refuses to
    /// replace a stage `run` already has.
    pub fn reuse(from: &Path, run: &Path, stage: &'static str) -> Result<()> {
        let (source, _) = Self::finished(from, stage)?;
        let target = run.join(stage);
        if target.exists() {
            return Err(Error::Checkpoint(format!(
                "{}: already holds stage {}; use another run folder to start from {}",
                target.display(),
                stage,
                from.display()
            )));
        }
        // Copied into a temporary folder first, renamed last: a kill leaves no half stage.
        let partial = run.join(format!(".{stage}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(io_error(&partial))?;
        for entry in std::fs::read_dir(&source.dir).map_err(io_error(&source.dir))? {
            let path = entry.map_err(io_error(&source.dir))?.path();
            let to = partial.join(path.file_name().expect("BUG: a directory entry has a name"));
            // Checkpoints are only ever replaced by rename, so sharing them is safe; the
            // metrics are appended to and truncated in place, so they are copied.
            let checkpoint = path.extension().is_some_and(|e| e == "bpk");
            if !checkpoint || std::fs::hard_link(&path, &to).is_err() {
                std::fs::copy(&path, &to).map_err(io_error(&path))?;
            }
        }
        std::fs::rename(&partial, &target).map_err(io_error(&target))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The stage's name.
    pub fn stage(&self) -> &'static str {
        self.stage
    }

    /// The saved state, if a checkpoint exists.
    pub fn state(&self) -> Result<Option<RunState>> {
        let path = self.dir.join("state.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Checkpoint(format!("{}: not a maskid run state ({e})", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path: path.display().to_string(), source }),
        }
    }

    /// The config saved with the stage.
    pub fn config<C: RunConfig>(&self) -> Result<C> {
        C::load(&self.dir.join("config.toml"))
    }

    /// Writes the config beside the checkpoints (before training starts).
    pub fn save_config(&self, config: &impl RunConfig) -> Result<()> {
        write(&self.dir.join("config.toml"), config.to_toml().as_bytes())
    }

    /// Writes the parts of the checkpoint of `state.step` (and the new best model, if any),
    /// then the state that points at them, then deletes older files.
    pub fn save_checkpoint(&self, state: &mut RunState, parts: &[(&str, Bytes)], best: Option<Bytes>) -> Result<()> {
        state.parts.clear();
        for (name, bytes) in parts {
            write(&self.part_path(name, state.step), bytes)?;
            state.parts.push((name.to_string(), hex::encode(Sha256::digest(&bytes[..]))));
        }
        if let Some(bytes) = best {
            write(&self.best_path(state.best_step), &bytes)?;
            state.best_sha256 = Some(hex::encode(Sha256::digest(&bytes[..])));
        }
        let json = serde_json::to_vec_pretty(state).expect("BUG: the state serialises");
        write(&self.dir.join("state.json"), &json)?;
        self.remove_stale(state)
    }

    /// Reads a checkpoint part of the saved state, checking its SHA-256.
    pub fn load_part(&self, state: &RunState, name: &str) -> Result<Bytes> {
        let expected =
            state.parts.iter().find(|(n, _)| n == name).map(|(_, h)| h.as_str()).ok_or_else(|| {
                Error::Checkpoint(format!("{}: the checkpoint has no part '{name}'", self.dir.display()))
            })?;
        read_checked(&self.part_path(name, state.step), expected)
    }

    /// The stage's result (the model at its best validation), checked against its SHA-256.
    pub fn best(&self, state: &RunState) -> Result<Bytes> {
        let expected = state
            .best_sha256
            .as_deref()
            .ok_or_else(|| Error::Checkpoint(format!("{}: no validated model yet", self.dir.display())))?;
        read_checked(&self.best_path(state.best_step), expected)
    }

    /// Loads the stage's result into `module`.
    pub fn load_best<M: Module>(&self, state: &RunState, module: M) -> Result<M> {
        load_module(module, self.best(state)?, &self.best_path(state.best_step).display().to_string())
    }

    /// Path of the best model of a state.
    pub fn best_path(&self, step: usize) -> PathBuf {
        self.dir.join(format!("best-{step}.bpk"))
    }

    fn part_path(&self, name: &str, step: usize) -> PathBuf {
        self.dir.join(format!("{name}-{step}.bpk"))
    }

    fn remove_stale(&self, state: &RunState) -> Result<()> {
        let (part_suffix, best) = (format!("-{}.bpk", state.step), format!("best-{}.bpk", state.best_step));
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|source| Error::Io { path: self.dir.display().to_string(), source })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = if name.starts_with("best-") { name != best } else { !name.ends_with(&part_suffix) };
            if name.ends_with(".bpk") && stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Opens `metrics.jsonl` for appending, first dropping lines of steps after `step` (logged
    /// after the checkpoint a resumed run starts from).
    pub fn metrics(&self, step: usize) -> Result<MetricsLog> {
        let path = self.dir.join("metrics.jsonl");
        let io = |source| Error::Io { path: path.display().to_string(), source };
        let kept: Vec<String> = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s as usize <= step)
                })
                .map(str::to_owned)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write(&path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(io)?;
        Ok(MetricsLog { path, file })
    }
}

/// Encodes a module's parameters (burnpack bytes).
pub fn module_bytes<M: Module>(module: &M) -> Result<Bytes> {
    module.clone().into_record().into_bytes().map_err(|e| Error::Checkpoint(format!("encoding parameters: {e}")))
}

/// Loads parameters into `module`, refusing a record of another shape with a clear message.
pub fn load_module<M: Module>(module: M, bytes: Bytes, origin: &str) -> Result<M> {
    let record =
        ModuleRecord::from_bytes(bytes).map_err(|e| Error::Checkpoint(format!("{origin}: not a burn record ({e})")))?;
    module.try_load_record(record).map_err(|e| {
        Error::Checkpoint(format!(
            "{origin}: the checkpoint does not fit the configured network ({e}); was it trained with another config?"
        ))
    })
}

/// `metrics.jsonl`, appended line by line.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Appends one JSON object.
    pub fn log(&mut self, value: &serde_json::Value) -> Result<()> {
        let mut line = value.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| Error::Io { path: self.path.display().to_string(), source })
    }

    /// Every logged record.
    pub fn read(&self) -> Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|source| Error::Io { path: self.path.display().to_string(), source })?;
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

fn read_checked(path: &Path, sha256: &str) -> Result<Bytes> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    if hex::encode(Sha256::digest(&bytes)) != sha256 {
        return Err(Error::Checkpoint(format!(
            "{}: corrupt checkpoint (SHA-256 differs from state.json); delete the stage folder to train it again",
            path.display()
        )));
    }
    Ok(Bytes::from_bytes_vec(bytes))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes).map_err(|e| Error::Checkpoint(maskid_core::error_message(&e)))
}

/// Maps an I/O error to one that names the file.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_replace_each_other_and_corruption_is_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StageDir::create(tmp.path(), "inpaint").unwrap();
        assert!(dir.state().unwrap().is_none());
        let mut state = RunState { step: 10, ..Default::default() };
        state.best_step = 10;
        let best = Some(Bytes::from_bytes_vec(vec![7]));
        dir.save_checkpoint(&mut state, &[("model", Bytes::from_bytes_vec(vec![1, 2, 3]))], best).unwrap();
        state.step = 20;
        dir.save_checkpoint(&mut state, &[("model", Bytes::from_bytes_vec(vec![4, 5]))], None).unwrap();
        let saved = dir.state().unwrap().unwrap();
        assert_eq!(saved.step, 20);
        assert_eq!(&dir.load_part(&saved, "model").unwrap()[..], &[4, 5]);
        assert!(!dir.path().join("model-10.bpk").exists(), "older parts are deleted");
        assert_eq!(&dir.best(&saved).unwrap()[..], &[7], "the best model of step 10 stays");
        std::fs::write(dir.path().join("model-20.bpk"), [9, 9]).unwrap();
        let err = dir.load_part(&saved, "model").unwrap_err().to_string();
        assert!(err.contains("corrupt checkpoint"), "{err}");
        assert!(dir.load_part(&saved, "optimizer").is_err());
    }

    #[test]
    fn metrics_after_the_checkpoint_are_dropped_on_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StageDir::create(tmp.path(), "reformer").unwrap();
        let mut log = dir.metrics(0).unwrap();
        for step in [1, 2, 3, 4] {
            log.log(&serde_json::json!({ "step": step, "loss": 1.0 })).unwrap();
        }
        let log = dir.metrics(2).unwrap();
        let steps: Vec<u64> = log.read().unwrap().iter().map(|v| v["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [1, 2]);
    }
}
