//! Atomic files on simulated nodes under crashes, torn writes, EIO and ENOSPC: a read
//! after any crash returns a whole version, never older than the last acknowledged one
//! and never newer than the last attempted one.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use super::mutant::{self, Mutant};
use super::{AtomicFileError, read, write};
use crate::io::{Env, Node, NodeId, TimerId};
use crate::sim::{ChaosConfig, DiskConfig, SimConfig, SimDisk, Simulation, check_seeds};

const NAME: &str = "hard-state";
const WRITE: TimerId = TimerId(1);
const NODES: usize = 3;

#[derive(Debug, Default, Clone, Copy)]
struct NodeModel {
    acknowledged: u64,
    attempted: u64,
}

#[derive(Debug, Default)]
struct Model {
    nodes: [NodeModel; NODES],
    violation: Option<String>,
    writes_ok: u64,
    writes_failed: u64,
    reads: u64,
}

impl Model {
    fn violate(&mut self, reason: String) {
        self.violation.get_or_insert(reason);
    }
}

/// Contents of version `version`: the number, then filler that depends on it.
fn contents(version: u64) -> Vec<u8> {
    let mut data = version.to_le_bytes().to_vec();
    data.extend((0..(version % 200) as u8).map(|byte| byte ^ version as u8));
    data
}

struct StateNode {
    id: NodeId,
    disk: SimDisk,
    model: Rc<RefCell<Model>>,
    version: u64,
    failed: bool,
}

impl Node for StateNode {
    fn on_start(&mut self, env: &mut dyn Env) {
        let mut model = self.model.borrow_mut();
        let bounds = model.nodes[self.id.0 as usize];
        match read(&mut self.disk, NAME) {
            Ok(found) => {
                model.reads += 1;
                let version = match found {
                    None => 0,
                    Some(data) if data.len() >= 8 => {
                        let mut word = [0; 8];
                        word.copy_from_slice(&data[..8]);
                        let version = u64::from_le_bytes(word);
                        if data != contents(version) {
                            model.violate(format!("{}: version {version} is mixed", self.id));
                        }
                        version
                    }
                    Some(data) => {
                        model.violate(format!("{}: {} bytes of state", self.id, data.len()));
                        return;
                    }
                };
                if version < bounds.acknowledged || version > bounds.attempted {
                    model.violate(format!(
                        "{}: read version {version}, acknowledged {}, attempted {}",
                        self.id, bounds.acknowledged, bounds.attempted
                    ));
                }
                self.version = version;
            }
            Err(AtomicFileError::Disk { .. }) => return, // Stay down until the next restart.
            Err(error) => {
                model.violate(format!("{}: {error}", self.id));
                return;
            }
        }
        let delay = 1 + env.random_u64() % 5;
        env.set_timer(WRITE, delay);
    }

    fn on_message(&mut self, _: &mut dyn Env, _: NodeId, _: Bytes) {}

    fn on_timer(&mut self, env: &mut dyn Env, _: TimerId) {
        if self.failed {
            return;
        }
        let mut model = self.model.borrow_mut();
        // Versions only grow across incarnations: continue from what was attempted.
        let node = &mut model.nodes[self.id.0 as usize];
        let version = node.attempted.max(self.version) + 1;
        node.attempted = version;
        match write(&mut self.disk, NAME, &contents(version)) {
            Ok(()) => {
                model.nodes[self.id.0 as usize].acknowledged = version;
                model.writes_ok += 1;
                self.version = version;
            }
            Err(AtomicFileError::Disk { .. }) => {
                // Like a failed WAL fsync: no retry in this life.
                model.writes_failed += 1;
                self.failed = true;
                return;
            }
            Err(error) => model.violate(format!("{}: {error}", self.id)),
        }
        let delay = 1 + env.random_u64() % 5;
        env.set_timer(WRITE, delay);
    }
}

/// One seed; returns (writes acknowledged, writes failed, reads).
fn run(seed: u64) -> Result<(u64, u64, u64), String> {
    let model = Rc::new(RefCell::new(Model::default()));
    let shared = Rc::clone(&model);
    let mut config = SimConfig::reliable(NODES);
    config.disk = DiskConfig {
        sync_failure_probability: 0.005,
        no_space_probability: 0.002,
        ..DiskConfig::faulty()
    };
    config.chaos = ChaosConfig {
        interval_ms: 10,
        crash_probability: 0.15,
        restart_delay_min_ms: 1,
        restart_delay_max_ms: 20,
        partition_probability: 0.0,
        heal_probability: 0.0,
    };
    let mut sim = Simulation::new(seed, config, move |id, disk| StateNode {
        id,
        disk,
        model: Rc::clone(&shared),
        version: 0,
        failed: false,
    });
    sim.run_until(1_000).map_err(|error| error.to_string())?;
    // Final check: every node crashes and reads its state back from a reliable disk.
    sim.crash_all_onto_reliable_disks();
    sim.run_for(30).map_err(|error| error.to_string())?;
    let model = model.borrow();
    if let Some(reason) = &model.violation {
        return Err(reason.clone());
    }
    Ok((model.writes_ok, model.writes_failed, model.reads))
}

#[test]
fn atomic_files_are_old_or_new_never_mixed() {
    let mut totals = (0u64, 0u64, 0u64);
    let mut seeds = 0;
    check_seeds(
        module_path!(),
        "atomic_files_are_old_or_new_never_mixed",
        |seed| {
            seeds += 1;
            let (ok, failed, reads) = run(seed)?;
            totals = (totals.0 + ok, totals.1 + failed, totals.2 + reads);
            Ok(())
        },
    );
    eprintln!(
        "atomic file simulation, {seeds} seeds: acknowledged {}, failed {}, reads {}",
        totals.0, totals.1, totals.2
    );
    if seeds >= 50 {
        assert!(totals.0 > 0 && totals.1 > 0 && totals.2 > seeds * NODES as u64);
    }
}

/// Each missing fsync is a bug the simulation must find within a few seeds.
#[test]
fn atomic_file_mutants_are_caught() {
    for mutant in [Mutant::SkipTempSync, Mutant::SkipDirSync] {
        mutant::set(Some(mutant));
        let caught = (0..50).find_map(|seed| run(seed).err());
        mutant::set(None);
        assert!(caught.is_some(), "{mutant:?} survived 50 seeds");
    }
}
