//! A process's identity that survives its restarts: the sequencer's transactional id and its
//! static membership of the sequencers' consumer group are built from it.
//!
//! Why it must survive: a sequencer SIGKILLed inside a Kafka transaction leaves the transaction
//! open, and every `read_committed` reader of the partitions it wrote (the ingress waiting for
//! receipts, the processors, the next owner reading the sequencer's state) stops in front of it
//! until the broker aborts it at its timeout. A producer that starts with the same
//! transactional id fences its predecessor and aborts that transaction at once; a consumer with
//! the same `group.instance.id` takes back its partitions without waiting for the dead member's
//! session to time out.
//!
//! Where it comes from: `[log.kafka] instance_id` when set (e.g. a pod's stable name), else a
//! slot of the data directory: files `instance-0.id`, `instance-1.id`, …, each holding a UUID
//! and locked (`flock`) by the process that uses it for as long as it runs. A process takes the
//! first slot no live process holds, so a restart on the same data directory takes its
//! predecessor's identity (the kernel released the lock with the process), and several processes
//! on one directory never share one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;
use uuid::Uuid;

/// More processes than this on one data directory is a mistake, not a deployment.
const MAX_SLOTS: usize = 64;

/// The identity, and the slot's lock (held until the process ends).
pub struct Instance {
    pub id: String,
    _lock: Option<File>,
}

impl Instance {
    /// The configured identity, or the first free slot of `data_dir`.
    pub fn claim(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Instance> {
        if let Some(id) = configured.filter(|id| !id.trim().is_empty()) {
            return Ok(Instance {
                id: id.trim().to_string(),
                _lock: None,
            });
        }
        for slot in 0..MAX_SLOTS {
            let path = data_dir.join(format!("instance-{slot}.id"));
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            // rustix's flock, not `File::try_lock`: the toolchain floor (Rust 1.85) predates it.
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => continue,
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("locking {}", path.display()))
                }
            }
            let id = read_or_create(&mut file).with_context(|| format!("{}", path.display()))?;
            tracing::info!(instance = %id, slot, "This process's instance identity.");
            return Ok(Instance {
                id: id.to_string(),
                _lock: Some(file),
            });
        }
        anyhow::bail!(
            "{MAX_SLOTS} processes already run on the data directory {}: give this one a directory of its own",
            data_dir.display()
        )
    }
}

/// The slot's UUID; a new one when the file is empty (or was torn by a crash while written).
fn read_or_create(file: &mut File) -> anyhow::Result<Uuid> {
    let mut text = String::new();
    file.read_to_string(&mut text).context("reading")?;
    if let Ok(id) = Uuid::parse_str(text.trim()) {
        return Ok(id);
    }
    let id = Uuid::new_v4();
    file.set_len(0).context("emptying")?;
    std::io::Seek::rewind(file).context("rewinding")?;
    writeln!(file, "{id}").context("writing")?;
    file.sync_all().context("syncing")?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_takes_its_predecessors_identity_and_two_processes_never_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::claim(None, dir.path()).unwrap();
        let second = Instance::claim(None, dir.path()).unwrap();
        assert_ne!(first.id, second.id, "a slot is held while its process runs");
        let first_id = first.id.clone();
        drop(first); // the process ended: its lock is gone
        let restarted = Instance::claim(None, dir.path()).unwrap();
        assert_eq!(
            restarted.id, first_id,
            "the free slot's identity is taken back"
        );
        assert_ne!(restarted.id, second.id);
    }

    #[test]
    fn a_configured_identity_wins_and_a_torn_file_gets_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let named = Instance::claim(Some(" pod-3 "), dir.path()).unwrap();
        assert_eq!(named.id, "pod-3");
        std::fs::write(dir.path().join("instance-0.id"), "12ab").unwrap();
        let slot = Instance::claim(None, dir.path()).unwrap();
        assert!(Uuid::parse_str(&slot.id).is_ok(), "{}", slot.id);
        let written = std::fs::read_to_string(dir.path().join("instance-0.id")).unwrap();
        assert_eq!(written.trim(), slot.id);
    }
}
