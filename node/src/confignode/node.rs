//! [`ConfigNode`]: the ConfigNode state machine with its durable journal —
//! the I/O edge around the pure [`ConfigState`] and planner.
//!
//! Every public mutation plans commands from the current state, and for each
//! command: checks it, appends it to the store, applies it, and only then
//! plans the next one ("propose and await": a multi-command operation never
//! plans from a state its earlier commands have not reached, so the same code
//! runs over a replicated log, where a command is applied once committed).
//! Nothing is answered before the store made the commands durable (at once,
//! or at the end of a group-committed batch). Operations whose steps involve
//! other nodes are procedures (`super::procedure`), resumed after a restart.
//! The route snapshot is rebuilt when it is asked for after the version moved:
//! once per batch of control requests, not once per command (each rebuild
//! copies every partition). A single thread (the ConfigNode's) owns this value.

use super::error::{ConfigNodeError, Result};
use super::history::CommandHistory;
use super::journal::Journal;
use super::model::{
    ClusterSettings, ConfigNodeSpec, DataNodeSpec, DatabaseSettings, NodeId, NodeStatus,
    RegionGroupId, RegionGroupKind, RegionGroupPolicy,
};
use super::model::{RegionReplica, ReplicationAck};
use super::placement::{
    plan_data_partitions, plan_leader_balance, plan_leader_failover, plan_region_groups,
    plan_schema_partitions, plan_step_down, region_group_target,
};
use super::placement::{plan_migration_shard, plan_migration_target};
use super::procedure::{
    DeleteDatabaseStep, KillMode, KillPoint, LeaderReport, MIGRATION_STEP_TIMEOUT_MS,
    MIGRATIONS_PER_REMOVAL, MigrateStep, Procedure, ProcedureEnv, ProcedureId, RemoveDataNodeStep,
    SCHEMA_COPY_TIMEOUT_MS,
};
use super::route::RouteSnapshot;
use super::state::{ConfigCommand, ConfigState, database_of};
use super::store::{CommandStore, Committed, Recovered, open_journal};
use super::views::{self, RegionFilter, Table};
use crate::sql::{DatabaseAttributes, PathPattern, Ttl};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Journal records replayed at most on open before a snapshot is written:
/// bounds restart time while keeping snapshots (a full state rewrite) rare.
pub const LOG_RECORDS_PER_SNAPSHOT: u64 = 4096;

/// Commands kept in memory after they were applied, so a DataNode that is a little behind
/// catches its mirror of the state up with the commands it missed rather than a whole
/// state. Why 4096: the same as a journal between snapshots — seconds of the busiest DDL
/// or partition creation; a node further behind gets the whole state (`Delta::Full`).
pub const HISTORY_COMMANDS_MAX: usize = 4096;

/// The journal's file name stem inside the ConfigNode directory.
const JOURNAL_NAME: &str = "confignode";

fn system_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// The ConfigNode role's state, persisted in a [`CommandStore`] (the server's is the
/// std::fs [`Journal`] under one directory; the simulator's a faulty simulated disk).
#[derive(Debug)]
pub struct ConfigNode<S: CommandStore = Journal> {
    state: ConfigState,
    journal: S,
    /// The route snapshot of some version: rebuilt by [`ConfigNode::route_snapshot`] when
    /// the state moved past it.
    route: std::cell::RefCell<Arc<RouteSnapshot>>,
    clock_ms: fn() -> i64,
    /// Who leads the ConfigNode group: the consensus layer's view, never replicated state
    /// (a lone ConfigNode leads itself once registered).
    leader: Option<NodeId>,
    /// What kill points do (tests only; disarmed in production).
    kill_mode: KillMode,
    /// Statuses nodes reported about themselves (a DataNode whose disk filled is
    /// `ReadOnly`): like IoTDB's heartbeat-fed load cache, runtime knowledge, never
    /// written to the store — a node that cannot write its own disk must still be able to
    /// say so, and a restart starts from what the node reports again.
    reported_status: std::collections::BTreeMap<NodeId, NodeStatus>,
    /// The last applied commands (at most [`HISTORY_COMMANDS_MAX`]).
    history: CommandHistory,
    /// When each waiting migration step was first seen waiting (runtime: a new leader
    /// starts the clock again), for [`MIGRATION_STEP_TIMEOUT_MS`].
    waiting_since: std::collections::HashMap<ProcedureId, (MigrateStep, i64)>,
    /// The index each migration's new replica must hold before it counts as caught up:
    /// the leader's last index when the catch-up step was first looked at (runtime; a
    /// new leader takes a later, so stricter, one).
    catch_up_targets: std::collections::HashMap<ProcedureId, u64>,
    /// Inside [`ConfigNode::begin_batch`] .. [`ConfigNode::end_batch`]: appends are made
    /// durable together at the end, except a procedure's steps (see `commit`).
    batching: bool,
}

impl ConfigNode {
    /// Opens the state in `dir`, creating it with `settings` on first start.
    /// A restarted ConfigNode must be given the settings it was created with
    /// ([`ConfigNodeError::SettingsChanged`] otherwise).
    pub fn open(dir: &Path, settings: ClusterSettings) -> Result<ConfigNode> {
        let (journal, recovered) = open_journal(dir, JOURNAL_NAME)?;
        ConfigNode::from_store(journal, recovered, settings)
    }
}

impl<S: CommandStore> ConfigNode<S> {
    /// The ConfigNode over an opened store and what it recovered (see
    /// [`ConfigNode::open`] for the rules on `settings`).
    pub fn from_store(
        mut journal: S,
        recovered: Recovered,
        settings: ClusterSettings,
    ) -> Result<ConfigNode<S>> {
        let mut state = recovered
            .snapshot
            .unwrap_or_else(|| ConfigState::new(settings.clone()));
        check_settings_unchanged(state.settings(), &settings)?;
        for command in &recovered.commands {
            state.apply(command).map_err(|error| {
                ConfigNodeError::InvalidCommand(format!("replaying {command:?}: {error}"))
            })?;
        }
        // Every open starts a new snapshot and an empty log, so no file an
        // earlier process wrote is ever appended to. What it wrote may have
        // been read from the page cache only: after a failed fsync Linux keeps
        // the pages readable but marks them clean, so they never reach the
        // disk, a later fsync succeeds without writing them, and appending
        // after them leaves a hole in the middle of the log once the power
        // goes. A snapshot written from memory and synced makes everything
        // recovered durable and retires the old files. (Fresh: this also
        // persists the settings before any command.) The simulator found
        // both forms of this (sim_tests).
        journal.write_snapshot(&state)?;
        let route = std::cell::RefCell::new(Arc::new(RouteSnapshot::from_state(&state)));
        Ok(ConfigNode {
            history: CommandHistory::at(state.version()),
            state,
            journal,
            route,
            clock_ms: system_clock_ms,
            leader: None,
            kill_mode: KillMode::Disarmed,
            batching: false,
            reported_status: std::collections::BTreeMap::new(),
            waiting_since: std::collections::HashMap::new(),
            catch_up_targets: std::collections::HashMap::new(),
        })
    }

    /// Replaces the clock that stamps region group creation times (tests use
    /// a fixed one).
    pub fn set_clock(&mut self, clock_ms: fn() -> i64) {
        self.clock_ms = clock_ms;
    }

    /// Records who leads the ConfigNode group (shown by `SHOW CONFIGNODES`).
    pub fn set_leader(&mut self, leader: Option<NodeId>) {
        self.leader = leader;
    }

    /// Records the status a node reported about itself (not persisted; see
    /// `reported_status`); `Running` clears an earlier report.
    pub fn report_status(&mut self, node_id: NodeId, status: NodeStatus) -> Result<()> {
        if !self.state.data_nodes().contains_key(&node_id)
            && !self.state.config_nodes().contains_key(&node_id)
        {
            return Err(ConfigNodeError::NodeNotFound(node_id));
        }
        if status == NodeStatus::Running {
            self.reported_status.remove(&node_id);
        } else {
            self.reported_status.insert(node_id, status);
        }
        Ok(())
    }

    /// The state the views show: the replicated state with reported statuses laid over.
    fn view_state(&self) -> std::borrow::Cow<'_, ConfigState> {
        if self.reported_status.is_empty() {
            return std::borrow::Cow::Borrowed(&self.state);
        }
        let mut state = self.state.clone();
        for (&node_id, &status) in &self.reported_status {
            state.overlay_status(node_id, status);
        }
        std::borrow::Cow::Owned(state)
    }

    /// Arms (or disarms) the procedures' kill points (tests).
    pub fn set_kill_mode(&mut self, kill_mode: KillMode) {
        self.kill_mode = kill_mode;
    }

    /// The current state.
    pub fn state(&self) -> &ConfigState {
        &self.state
    }

    /// The state version (number of applied commands).
    pub fn version(&self) -> u64 {
        self.state.version()
    }

    /// The route table of the current state (rebuilt here if the state moved since the
    /// last one was asked for).
    pub fn route_snapshot(&self) -> Arc<RouteSnapshot> {
        let mut route = self.route.borrow_mut();
        if route.version != self.state.version() {
            *route = Arc::new(RouteSnapshot::from_state(&self.state));
        }
        Arc::clone(&route)
    }

    /// Starts a batch: the commands of the following calls are applied at once but made
    /// durable together by [`ConfigNode::end_batch`] (one fdatasync); answer nobody before.
    pub fn begin_batch(&mut self) {
        self.batching = true;
        self.journal.defer_sync();
    }

    /// Writes the batch's commands to the journal without making them durable yet
    /// ([`CommandStore::write_deferred`]); [`ConfigNode::end_batch`] does.
    pub fn write_batch(&mut self) -> Result<()> {
        self.journal.write_deferred()
    }

    /// Makes the batch durable.
    pub fn end_batch(&mut self) -> Result<()> {
        self.batching = false;
        self.journal.sync()?;
        Ok(())
    }

    /// Writes a snapshot now and starts an empty log.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.journal.write_snapshot(&self.state)?;
        Ok(())
    }

    /// [`ConfigNode::checkpoint`] if the log holds records since the latest snapshot.
    pub fn fold_log(&mut self) -> Result<()> {
        if self.journal.records_since_snapshot() > 0 {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Checks, persists and applies one command.
    fn commit(&mut self, command: ConfigCommand) -> Result<()> {
        if self.journal.records_since_snapshot() >= LOG_RECORDS_PER_SNAPSHOT
            || self.journal.log_outgrew_snapshot()
        {
            self.journal.write_snapshot(&self.state)?;
        }
        self.state.check(&command)?;
        let before = self.journal.append(&command, &self.state)?;
        if self.batching
            && matches!(
                command,
                ConfigCommand::StartProcedure { .. } | ConfigCommand::AdvanceProcedure { .. }
            )
        {
            // A procedure acts on its recorded step at once (drops replicas, deletes
            // files), before the batch ends: the step must be durable first, or a crash
            // after the act would forget the procedure that must finish it.
            self.journal.sync()?;
            self.journal.defer_sync();
        }
        if before.is_empty() {
            self.state
                .apply(&command)
                .expect("a checked command applies");
            self.remember(command);
            return Ok(());
        }
        // Replicated: what others committed first comes first. Our command was checked
        // against the state without them; if they made it invalid, it is skipped here as
        // on every other node (apply is deterministic), and the caller is told.
        self.apply_committed(before);
        if self.apply_one(command) {
            Ok(())
        } else {
            Err(ConfigNodeError::InvalidCommand(
                "the change conflicted with a concurrent one; retry".into(),
            ))
        }
    }

    /// Keeps an applied command for the deltas of DataNode mirrors.
    fn remember(&mut self, command: ConfigCommand) {
        self.history.push(command);
    }

    /// Applies a committed command; one that does not apply (checked against a state
    /// that changed before it was committed) is skipped — on every node alike, since
    /// apply is deterministic — and `false` is returned.
    fn apply_one(&mut self, command: ConfigCommand) -> bool {
        match self.state.apply(&command) {
            Ok(()) => {
                self.remember(command);
                true
            }
            Err(error) => {
                tracing::warn!(%error, ?command, "a committed command does not apply; skipped");
                false
            }
        }
    }

    fn apply_committed(&mut self, committed: Vec<Committed>) {
        for entry in committed {
            match entry {
                Committed::Command(command) => {
                    self.apply_one(command);
                }
                Committed::State(state) => {
                    self.state = *state;
                    self.history.reset(self.state.version());
                }
                Committed::Nothing => {}
            }
        }
    }

    /// Applies what other ConfigNodes committed (a replicated store's followers, and a
    /// new leader before it serves). Returns how many entries were applied.
    pub fn catch_up(&mut self) -> usize {
        let committed = self.journal.poll_committed();
        let count = committed.len();
        if count > 0 {
            self.apply_committed(committed);
        }
        count
    }

    /// The store (a replicated store's host asks it about leadership).
    pub fn store(&self) -> &S {
        &self.journal
    }

    /// The commands that bring a state at `version` to the current one, oldest first;
    /// `None` when they are no longer kept (the caller then needs the whole state) or
    /// `version` is ahead of this node's.
    pub fn commands_since(&self, version: u64) -> Option<Vec<ConfigCommand>> {
        self.history.since(version)
    }

    /// Registers a ConfigNode, or re-registers a known one (same internal
    /// address and port); returns its id.
    pub fn register_config_node(&mut self, spec: ConfigNodeSpec) -> Result<NodeId> {
        let known = self
            .state
            .config_node_at(&spec.internal_address, spec.internal_port);
        let node_id = match known {
            Some(info) if info.spec == spec && info.status == NodeStatus::Running => {
                return Ok(info.node_id);
            }
            Some(info) => info.node_id,
            None => self.state.next_node_id(),
        };
        self.commit(ConfigCommand::RegisterConfigNode { node_id, spec })?;
        Ok(node_id)
    }

    /// Registers a DataNode, or re-registers a known one (same internal
    /// address and port, e.g. after a restart: it becomes Running); returns
    /// its id.
    pub fn register_data_node(&mut self, spec: DataNodeSpec) -> Result<NodeId> {
        let known = self
            .state
            .data_node_at(&spec.internal_address, spec.internal_port);
        let node_id = match known {
            Some(info) if info.spec == spec && info.status == NodeStatus::Running => {
                return Ok(info.node_id);
            }
            Some(info) => info.node_id,
            None => self.state.next_node_id(),
        };
        self.commit(ConfigCommand::RegisterDataNode { node_id, spec })?;
        Ok(node_id)
    }

    /// Sets a node's status (from heartbeats or an admin command). When a
    /// DataNode stops being Running, leadership of its groups moves to
    /// Running replicas.
    pub fn set_node_status(&mut self, node_id: NodeId, status: NodeStatus) -> Result<()> {
        let current = self
            .state
            .data_nodes()
            .get(&node_id)
            .map(|info| info.status)
            .or_else(|| {
                self.state
                    .config_nodes()
                    .get(&node_id)
                    .map(|info| info.status)
            })
            .ok_or(ConfigNodeError::NodeNotFound(node_id))?;
        if current != status || !plan_leader_failover(&self.state).is_empty() {
            // One command: applying it also moves leadership off stopped nodes.
            self.commit(ConfigCommand::SetNodeStatus { node_id, status })?;
        }
        Ok(())
    }

    /// Sets a region group's in-sync set to `in_sync` (its leader's request): the
    /// replicas not named leave it. Refused when the group's epoch or in-sync version
    /// moved since the leader saw them.
    pub fn change_in_sync(
        &mut self,
        group: RegionGroupId,
        epoch: u64,
        version: u64,
        in_sync: &[NodeId],
    ) -> Result<()> {
        let current = self.state.region_group(group)?;
        let mut out_of_sync: Vec<NodeId> = current
            .replicas
            .iter()
            .map(|replica| replica.data_node_id)
            .filter(|node| !in_sync.contains(node))
            .collect();
        out_of_sync.sort_unstable();
        // A replica joins the set only while its DataNode runs: the leader may believe
        // a dead follower caught up (it was, when it died), but a new leader must never
        // be chosen among nodes that are down.
        if let Some(node_id) = in_sync.iter().find(|node_id| {
            !current.in_sync(**node_id)
                && self
                    .state
                    .data_nodes()
                    .get(node_id)
                    .is_none_or(|info| info.status != NodeStatus::Running)
        }) {
            return Err(ConfigNodeError::StaleRequest(format!(
                "DataNode {node_id} is not Running: it cannot join the in-sync set of \
                 region group {group}"
            )));
        }
        if out_of_sync == current.out_of_sync
            && current.epoch == epoch
            && current.in_sync_version == version
        {
            return Ok(());
        }
        self.commit(ConfigCommand::ChangeInSync {
            group,
            epoch,
            version,
            out_of_sync,
        })
    }

    /// Bumps a region group's epoch, same leader (the leader asks after a restart: it may
    /// not lead an epoch twice). A no-op when the epoch moved past `epoch` already.
    /// `step_down` (the leader was wiped for a snapshot and cannot lead): the new epoch
    /// names another replica ([`plan_step_down`]); with no candidate nothing changes (a new
    /// epoch naming it again would only be refused again) and the replica asks again.
    pub fn new_leader_epoch(
        &mut self,
        group: RegionGroupId,
        epoch: u64,
        step_down: bool,
    ) -> Result<()> {
        let current = self.state.region_group(group)?;
        if current.epoch > epoch {
            return Ok(());
        }
        if !step_down {
            return self.commit(ConfigCommand::NewLeaderEpoch { group, epoch });
        }
        match plan_step_down(&self.state, group) {
            Some(leader) => self.commit(ConfigCommand::ChangeLeaders {
                changes: vec![(group, leader)],
            }),
            None => Ok(()),
        }
    }

    /// Records the leader a replicated SchemaRegion group elected (its replica's report):
    /// a no-op when already recorded. Refused for a data group or an unreplicated one
    /// (their leaders are the ConfigNode's choice) and for a node holding no replica.
    pub fn report_schema_leader(&mut self, group: RegionGroupId, leader: NodeId) -> Result<()> {
        let current = self.state.region_group(group)?;
        if !current.elects_leader() {
            return Err(ConfigNodeError::NodeRefused {
                node_id: leader,
                reason: format!(
                    "region group {group} does not elect its leader: the ConfigNode \
                     chooses it"
                ),
            });
        }
        if current.leader == leader {
            return Ok(());
        }
        self.commit(ConfigCommand::ChangeLeaders {
            changes: vec![(group, leader)],
        })
    }

    /// Evens out leadership of replicated data region groups over the Running DataNodes
    /// ([`plan_leader_balance`]: only to replicas their leader's latest report shows caught
    /// up); returns how many groups moved (0: nothing committed).
    pub fn balance_leaders(
        &mut self,
        reports: &std::collections::HashMap<u32, LeaderReport>,
    ) -> Result<usize> {
        let changes = plan_leader_balance(&self.state, reports);
        let moved = changes.len();
        if moved > 0 {
            self.commit(ConfigCommand::ChangeLeaders { changes })?;
        }
        Ok(moved)
    }

    /// `REMOVE CONFIGNODE node`: forgets a ConfigNode (its host then takes it out of the
    /// Raft group, and the node stops itself once it applied its removal). Refused for the
    /// last ConfigNode and for this leader itself: the service
    /// (`cluster::confignode_service`) has a leader asked to remove itself hand
    /// leadership over first, and the new leader removes it.
    pub fn remove_config_node(&mut self, node_id: NodeId) -> Result<()> {
        if !self.state.config_nodes().contains_key(&node_id) {
            return Err(ConfigNodeError::NodeNotFound(node_id));
        }
        let refused = |reason: &str| ConfigNodeError::NodeRefused {
            node_id,
            reason: reason.to_string(),
        };
        if self.state.config_nodes().len() == 1 {
            return Err(refused("the last ConfigNode cannot be removed"));
        }
        if self.leader == Some(node_id) {
            return Err(refused(
                "it leads the ConfigNode group: stop it first (the others elect a new \
                 leader), then remove it",
            ));
        }
        self.commit(ConfigCommand::RemoveNode { node_id })
    }

    /// Removes a node. A DataNode must hold no region replica.
    pub fn remove_node(&mut self, node_id: NodeId) -> Result<()> {
        self.commit(ConfigCommand::RemoveNode { node_id })
    }

    /// Resolves `CREATE DATABASE` attributes against the cluster defaults.
    fn settings_for(&self, attributes: &DatabaseAttributes) -> DatabaseSettings {
        let cluster = self.state.settings();
        let policy = |count: Option<u32>, default: RegionGroupPolicy| {
            count.map_or(default, RegionGroupPolicy::Custom)
        };
        DatabaseSettings {
            ttl_ms: ttl_ms(attributes.ttl),
            time_partition_interval_ms: attributes
                .time_partition_interval_ms
                .unwrap_or(cluster.time_partition_interval_ms),
            schema_replication_factor: attributes
                .schema_replication_factor
                .unwrap_or(cluster.schema_replication_factor),
            data_replication_factor: attributes
                .data_replication_factor
                .unwrap_or(cluster.data_replication_factor),
            schema_region_groups: policy(
                attributes.schema_region_group_num,
                cluster.schema_region_group_policy,
            ),
            data_region_groups: policy(
                attributes.data_region_group_num,
                cluster.data_region_group_policy,
            ),
        }
    }

    /// `CREATE DATABASE name [WITH ...]`. Region groups are created lazily,
    /// with the first partition.
    pub fn create_database(&mut self, name: &str, attributes: &DatabaseAttributes) -> Result<()> {
        let settings = self.settings_for(attributes);
        self.commit(ConfigCommand::CreateDatabase {
            name: name.to_string(),
            settings,
        })
    }

    /// `ALTER DATABASE name WITH ...`: TTL and region group counts (which
    /// only ever grow the groups); see [`ConfigCommand::AlterDatabase`].
    pub fn alter_database(&mut self, name: &str, attributes: &DatabaseAttributes) -> Result<()> {
        let mut settings = self.state.database(name)?.settings.clone();
        if let Some(ttl) = attributes.ttl {
            settings.ttl_ms = ttl_ms(Some(ttl));
        }
        if let Some(interval) = attributes.time_partition_interval_ms {
            settings.time_partition_interval_ms = interval;
        }
        if let Some(factor) = attributes.schema_replication_factor {
            settings.schema_replication_factor = factor;
        }
        if let Some(factor) = attributes.data_replication_factor {
            settings.data_replication_factor = factor;
        }
        if let Some(count) = attributes.schema_region_group_num {
            settings.schema_region_groups = RegionGroupPolicy::Custom(count);
        }
        if let Some(count) = attributes.data_region_group_num {
            settings.data_region_groups = RegionGroupPolicy::Custom(count);
        }
        self.commit(ConfigCommand::AlterDatabase {
            name: name.to_string(),
            settings,
        })
    }

    /// Sets (`Some`) or removes (`None`) a database's TTL in milliseconds.
    pub fn set_ttl(&mut self, name: &str, ttl_ms: Option<u64>) -> Result<()> {
        let mut settings = self.state.database(name)?.settings.clone();
        settings.ttl_ms = ttl_ms;
        self.commit(ConfigCommand::AlterDatabase {
            name: name.to_string(),
            settings,
        })
    }

    /// Deletes one database with its region groups and partitions: a
    /// [`Procedure::DeleteDatabase`], run to its end (`env` drops the replicas).
    pub fn delete_database(&mut self, name: &str, env: &mut dyn ProcedureEnv) -> Result<()> {
        self.state.database(name)?;
        let id = self.state.next_procedure_id();
        self.commit(ConfigCommand::StartProcedure {
            id,
            procedure: Procedure::DeleteDatabase {
                name: name.to_string(),
                step: DeleteDatabaseStep::DropReplicas,
            },
        })?;
        self.kill_point(KillPoint::DeleteDatabaseStarted)?;
        self.run_procedure(id, env)
    }

    /// Resumes every procedure a crash interrupted, oldest first. A ConfigNode calls
    /// this once after opening (and, later, on becoming leader) before serving requests.
    pub fn resume_procedures(&mut self, env: &mut dyn ProcedureEnv) -> Result<usize> {
        let ids: Vec<ProcedureId> = self.state.procedures().keys().copied().collect();
        for &id in &ids {
            let procedure = &self.state.procedures()[&id];
            tracing::info!(
                id,
                kind = procedure.kind(),
                ?procedure,
                "resuming a procedure"
            );
            self.run_procedure(id, env)?;
        }
        Ok(ids.len())
    }

    /// Runs procedure `id` from its recorded step to its end.
    fn run_procedure(&mut self, id: ProcedureId, env: &mut dyn ProcedureEnv) -> Result<()> {
        loop {
            let Some(procedure) = self.state.procedures().get(&id).cloned() else {
                return Ok(());
            };
            match procedure {
                Procedure::DeleteDatabase { name, step } => match step {
                    DeleteDatabaseStep::DropReplicas => {
                        let groups: Vec<(RegionGroupId, RegionGroupKind)> = self
                            .state
                            .region_groups()
                            .values()
                            .filter(|group| group.database == name)
                            .map(|group| (group.id, group.kind))
                            .collect();
                        env.drop_replicas(&groups).map_err(|reason| {
                            ConfigNodeError::InvalidCommand(format!(
                                "dropping the region replicas of {name}: {reason}"
                            ))
                        })?;
                        self.kill_point(KillPoint::DeleteDatabaseReplicasDropped)?;
                        self.commit(ConfigCommand::AdvanceProcedure {
                            id,
                            procedure: Procedure::DeleteDatabase {
                                name,
                                step: DeleteDatabaseStep::Forget,
                            },
                        })?;
                        self.kill_point(KillPoint::DeleteDatabaseForgetRecorded)?;
                    }
                    DeleteDatabaseStep::Forget => {
                        if self.state.databases().contains_key(&name) {
                            self.commit(ConfigCommand::DeleteDatabase { name })?;
                        }
                        self.kill_point(KillPoint::DeleteDatabaseForgotten)?;
                        self.commit(ConfigCommand::FinishProcedure { id })?;
                    }
                },
                // Driven by `advance_procedures` from the DataNodes' reports.
                Procedure::MigrateRegion { .. } | Procedure::RemoveDataNode { .. } => {
                    return Ok(());
                }
            }
        }
    }

    /// `MIGRATE REGION group FROM from TO to`: starts a [`Procedure::MigrateRegion`] and
    /// returns its id; [`Self::advance_procedures`] carries it out (a DataRegion or a
    /// SchemaRegion). Refused (nothing recorded) when `from` holds no replica of the
    /// group, `to` is not a Running DataNode or already holds one, or another migration
    /// of the group, a SchemaRegion migration the other way, or a removal of either node
    /// runs.
    pub fn migrate_region(
        &mut self,
        group: RegionGroupId,
        from: NodeId,
        to: NodeId,
    ) -> Result<ProcedureId> {
        let current = self.state.region_group(group)?;
        let refused = |reason: String| ConfigNodeError::RegionRefused { group, reason };
        if !current.replicas.iter().any(|r| r.data_node_id == from) {
            return Err(refused(format!("DataNode {from} holds no replica of it")));
        }
        let target = self
            .state
            .data_nodes()
            .get(&to)
            .ok_or(ConfigNodeError::NodeNotFound(to))?;
        if target.status != NodeStatus::Running {
            return Err(refused(format!(
                "DataNode {to} is {}, not Running",
                target.status.as_str()
            )));
        }
        if current.replicas.iter().any(|r| r.data_node_id == to) {
            return Err(refused(format!(
                "DataNode {to} already holds a replica of it"
            )));
        }
        if let Some((id, ..)) = self.state.migration_of(group) {
            return Err(refused(format!("migration {id} of it is running")));
        }
        if current.kind == RegionGroupKind::Schema
            && let Some(id) = self.state.procedures().iter().find_map(|(id, p)| match p {
                Procedure::MigrateRegion {
                    group: g,
                    from: f,
                    to: t,
                    ..
                } if *f == to
                    && *t == from
                    && self
                        .state
                        .region_groups()
                        .get(g)
                        .is_some_and(|g| g.kind == RegionGroupKind::Schema) =>
                {
                    Some(*id)
                }
                _ => None,
            })
        {
            // Each DataNode's control thread would wait on the other's.
            return Err(refused(format!(
                "migration {id} copies a SchemaRegion from DataNode {to} to {from}; wait \
                 for it"
            )));
        }
        for n in [from, to] {
            if let Some(id) = self.state.removal_of(n) {
                return Err(refused(format!(
                    "DataNode {n} is being removed (procedure {id})"
                )));
            }
        }
        let shard = plan_migration_shard(&self.state, current.kind, to);
        self.start_migration(
            group,
            from,
            RegionReplica {
                data_node_id: to,
                shard,
            },
            None,
        )
    }

    fn start_migration(
        &mut self,
        group: RegionGroupId,
        from: NodeId,
        to: RegionReplica,
        removal_of: Option<NodeId>,
    ) -> Result<ProcedureId> {
        let id = self.state.next_procedure_id();
        self.commit(ConfigCommand::StartProcedure {
            id,
            procedure: Procedure::MigrateRegion {
                group,
                from,
                to: to.data_node_id,
                shard: to.shard,
                step: MigrateStep::AddPeer,
                removal_of,
            },
        })?;
        tracing::info!(id, %group, %from, to = %to.data_node_id, "region migration started");
        self.kill_point(KillPoint::MigrateStarted)?;
        Ok(id)
    }

    /// `REMOVE DATANODE node`: starts a [`Procedure::RemoveDataNode`] (or returns the one
    /// already running). Refused when fewer Running DataNodes than the largest replication
    /// factor would remain, when another replica of a group on the node is not Running
    /// (the node may hold the only good copy), when a group on the node is already being
    /// migrated, or when the node is not Running and holds the only replica of a group
    /// (that copy can only come from the node itself, so the removal could never finish).
    pub fn remove_data_node(&mut self, node_id: NodeId) -> Result<ProcedureId> {
        if let Some(id) = self.state.removal_of(node_id) {
            return Ok(id);
        }
        if !self.state.data_nodes().contains_key(&node_id) {
            return Err(ConfigNodeError::NodeNotFound(node_id));
        }
        let refused = |reason: String| ConfigNodeError::NodeRefused { node_id, reason };
        let remaining = self
            .state
            .data_nodes()
            .values()
            .filter(|n| n.node_id != node_id && n.status == NodeStatus::Running)
            .count();
        let largest_factor = self
            .state
            .databases()
            .values()
            .map(|d| {
                d.settings
                    .data_replication_factor
                    .max(d.settings.schema_replication_factor)
            })
            .max()
            .unwrap_or(1)
            .max(1);
        if remaining < largest_factor as usize {
            return Err(refused(format!(
                "only {remaining} Running DataNodes would remain, fewer than the \
                 largest replication factor {largest_factor}"
            )));
        }
        let status = self.state.data_nodes()[&node_id].status;
        for group in self.state.region_groups().values() {
            if !group.replicas.iter().any(|r| r.data_node_id == node_id) {
                continue;
            }
            if group.replicas.len() == 1 && status != NodeStatus::Running {
                return Err(refused(format!(
                    "it is {} and holds the only replica of {} {}; that copy can only \
                     be sent by the node itself, so start it again first",
                    status.as_str(),
                    group.kind.as_str(),
                    group.id
                )));
            }
            let down = group.replicas.iter().map(|r| r.data_node_id).find(|n| {
                *n != node_id
                    && self
                        .state
                        .data_nodes()
                        .get(n)
                        .is_none_or(|info| info.status != NodeStatus::Running)
            });
            if let Some(down) = down {
                return Err(refused(format!(
                    "DataNode {down}, which holds another replica of region {}, is not \
                     Running; removing this one could lose the group's data",
                    group.id
                )));
            }
            if let Some((id, ..)) = self.state.migration_of(group.id) {
                return Err(refused(format!(
                    "region {} is being migrated (procedure {id}); wait for it",
                    group.id
                )));
            }
        }
        let id = self.state.next_procedure_id();
        self.commit(ConfigCommand::StartProcedure {
            id,
            procedure: Procedure::RemoveDataNode {
                node: node_id,
                step: RemoveDataNodeStep::MoveReplicas,
            },
        })?;
        tracing::info!(id, node = %node_id, "DataNode removal started");
        self.kill_point(KillPoint::RemoveDataNodeStarted)?;
        self.advance_removal(id, node_id, RemoveDataNodeStep::MoveReplicas)?;
        Ok(id)
    }

    /// Moves every migration and DataNode removal on as far as the state and the leaders'
    /// `reports` allow (the ConfigNode leader calls this each heartbeat round). A step
    /// waits for what it needs (a replica caught up, a leader taking over); one that waits
    /// longer than [`MIGRATION_STEP_TIMEOUT_MS`] rolls its migration back. Returns how
    /// many procedures moved.
    pub fn advance_procedures(
        &mut self,
        reports: &std::collections::HashMap<u32, LeaderReport>,
    ) -> Result<usize> {
        let ids: Vec<(ProcedureId, Procedure)> = self
            .state
            .procedures()
            .iter()
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        self.waiting_since
            .retain(|id, _| ids.iter().any(|(known, _)| known == id));
        self.catch_up_targets
            .retain(|id, _| ids.iter().any(|(known, _)| known == id));
        let before = self.state.version();
        for (id, procedure) in ids {
            let outcome = match procedure {
                Procedure::MigrateRegion {
                    group,
                    from,
                    to,
                    shard,
                    step,
                    ..
                } => self.advance_migration(
                    id,
                    group,
                    from,
                    RegionReplica {
                        data_node_id: to,
                        shard,
                    },
                    step,
                    reports,
                ),
                Procedure::RemoveDataNode { node: target, step } => {
                    self.advance_removal(id, target, step)
                }
                Procedure::DeleteDatabase { .. } => Ok(()),
            };
            match outcome {
                Ok(()) => {}
                // A crash (a test's kill point) or a failed store stops everything.
                Err(
                    error @ (ConfigNodeError::Killed(_)
                    | ConfigNodeError::Store(_)
                    | ConfigNodeError::Journal(_)),
                ) => return Err(error),
                // One procedure's refused step (a state that moved under it) must not
                // hold the others up: it is tried again next round.
                Err(error) => {
                    tracing::warn!(id, %error, "a procedure step failed; retried next round")
                }
            }
        }
        Ok((self.state.version() - before) as usize)
    }

    /// Records procedure `id` at its next step.
    fn advance_to(&mut self, id: ProcedureId, procedure: Procedure) -> Result<()> {
        self.waiting_since.remove(&id);
        self.commit(ConfigCommand::AdvanceProcedure { id, procedure })
    }

    /// A step that waits: once it waited past [`MIGRATION_STEP_TIMEOUT_MS`], logs `why`,
    /// records `Cancel` (now `step`) and says so (`true`: go on with the rollback);
    /// otherwise `false` (wait for the next round).
    fn roll_back_if_late(
        &mut self,
        id: ProcedureId,
        step: &mut MigrateStep,
        procedure: &impl Fn(MigrateStep) -> Procedure,
        why: &str,
    ) -> Result<bool> {
        if !self.waited_too_long(id, *step) {
            return Ok(false);
        }
        tracing::warn!(id, procedure = ?procedure(*step), "{why}");
        *step = MigrateStep::Cancel;
        self.advance_to(id, procedure(*step))?;
        Ok(true)
    }

    /// Whether `id` has waited at `step` past the timeout (starting the clock on first
    /// sight).
    fn waited_too_long(&mut self, id: ProcedureId, step: MigrateStep) -> bool {
        self.waited_longer(id, step, MIGRATION_STEP_TIMEOUT_MS)
    }

    /// Whether `id` has waited at `step` more than `timeout_ms` (starting the clock on
    /// first sight).
    fn waited_longer(&mut self, id: ProcedureId, step: MigrateStep, timeout_ms: i64) -> bool {
        let now = (self.clock_ms)();
        let since = self.waiting_since.entry(id).or_insert((step, now));
        if since.0 != step {
            *since = (step, now);
        }
        now - since.1 > timeout_ms
    }

    /// The Raft leader of a replicated SchemaRegion group says the replica that migration
    /// `id` adds is a voter holding the log through the commit index it saw when the
    /// replica joined: the migration moves on to hand leadership over (if the old replica
    /// leads) and remove the old replica. A report for a migration past that step is
    /// answered `Ok`; one for no such migration is refused.
    pub fn schema_replica_caught_up(
        &mut self,
        id: ProcedureId,
        group: RegionGroupId,
        node: NodeId,
    ) -> Result<()> {
        match self.state.procedures().get(&id).cloned() {
            Some(Procedure::MigrateRegion {
                group: g,
                to,
                step,
                from,
                shard,
                removal_of,
            }) if g == group && to == node => {
                if step != MigrateStep::CatchUp {
                    return Ok(());
                }
                tracing::info!(id, %group, to = %node, "migration: the new schema replica caught up");
                self.kill_point(KillPoint::MigrateCaughtUp)?;
                self.advance_to(
                    id,
                    Procedure::MigrateRegion {
                        group,
                        from,
                        to,
                        shard,
                        step: MigrateStep::TransferLeader,
                        removal_of,
                    },
                )
            }
            _ => Err(ConfigNodeError::RegionRefused {
                group,
                reason: format!("no migration {id} adds a replica of it on DataNode {node}"),
            }),
        }
    }

    /// The Raft leader of a replicated SchemaRegion group says `node`'s replica, which
    /// migration `id` removes (its old replica at [`MigrateStep::RemovePeer`], its new
    /// one at [`MigrateStep::Cancel`]), is no longer a voter: the migration finishes. A
    /// report for any other migration or step is refused without a change.
    pub fn schema_replica_removed(
        &mut self,
        id: ProcedureId,
        group: RegionGroupId,
        node: NodeId,
    ) -> Result<()> {
        let refused = |reason: String| ConfigNodeError::RegionRefused { group, reason };
        let Some(Procedure::MigrateRegion {
            group: g,
            from,
            to,
            step,
            ..
        }) = self.state.procedures().get(&id).cloned()
        else {
            return Err(refused(format!("no migration {id} runs")));
        };
        let Some(removed) = step.leaving(from, to) else {
            return Err(refused(format!(
                "migration {id} removes no replica now (step {step:?})"
            )));
        };
        if g != group || removed != node {
            return Err(refused(format!(
                "migration {id} removes no replica of it on DataNode {node}"
            )));
        }
        if self
            .state
            .region_group(group)?
            .replicas
            .iter()
            .any(|r| r.data_node_id == node)
        {
            // The ConfigNode's own step comes first (the next procedure round).
            return Err(refused(format!(
                "DataNode {node} still holds a replica of it"
            )));
        }
        if step == MigrateStep::Cancel {
            tracing::warn!(id, %group, %from, %to, "region migration rolled back");
        } else {
            tracing::info!(id, %group, %from, %to, "region migration finished");
        }
        self.commit(ConfigCommand::FinishProcedure { id })
    }

    /// The DataNode holding the only replica of a SchemaRegion group copied it to the
    /// destination of migration `id` (step [`MigrateStep::CopySchema`]): the replica
    /// moves there in one command and the migration finishes. Refused when `id` is no
    /// such migration at that step (it finished, or was dropped: the copy is not used);
    /// a report repeated after the move is answered `Ok`.
    pub fn schema_region_copied(
        &mut self,
        id: ProcedureId,
        group: RegionGroupId,
        from: NodeId,
        to: NodeId,
    ) -> Result<()> {
        let refused = |reason: String| ConfigNodeError::RegionRefused { group, reason };
        match self.state.procedures().get(&id) {
            Some(Procedure::MigrateRegion {
                group: g,
                from: f,
                to: t,
                shard,
                step: MigrateStep::CopySchema,
                ..
            }) if *g == group && *f == from && *t == to => {
                let replica = RegionReplica {
                    data_node_id: to,
                    shard: *shard,
                };
                self.commit(ConfigCommand::MoveSchemaReplica {
                    group,
                    from,
                    to: replica,
                })?;
                tracing::info!(id, %group, %from, %to, "SchemaRegion moved: its migration finished");
                self.kill_point(KillPoint::MigrateSchemaMoved)?;
                self.commit(ConfigCommand::FinishProcedure { id })
            }
            None if self
                .state
                .region_groups()
                .get(&group)
                .is_some_and(|g| g.replicas.len() == 1 && g.replicas[0].data_node_id == to) =>
            {
                Ok(())
            }
            _ => Err(refused(format!(
                "no migration {id} of it from DataNode {from} to {to} is copying it now"
            ))),
        }
    }

    fn advance_migration(
        &mut self,
        id: ProcedureId,
        group: RegionGroupId,
        from: NodeId,
        to: RegionReplica,
        mut step: MigrateStep,
        reports: &std::collections::HashMap<u32, LeaderReport>,
    ) -> Result<()> {
        let removal_of = match self.state.procedures().get(&id) {
            Some(Procedure::MigrateRegion { removal_of, .. }) => *removal_of,
            _ => None,
        };
        let procedure = |step| Procedure::MigrateRegion {
            group,
            from,
            to: to.data_node_id,
            shard: to.shard,
            step,
            removal_of,
        };
        let holds = |state: &ConfigState, node: NodeId| {
            state
                .region_groups()
                .get(&group)
                .is_some_and(|g| g.replicas.iter().any(|r| r.data_node_id == node))
        };
        let new = to.data_node_id;
        loop {
            let Some(current) = self.state.region_groups().get(&group).cloned() else {
                // The database was deleted meanwhile: nothing left to move.
                tracing::info!(id, %group, "region group gone; migration finished");
                return self.commit(ConfigCommand::FinishProcedure { id });
            };
            let running = |state: &ConfigState, node: NodeId| {
                state
                    .data_nodes()
                    .get(&node)
                    .is_some_and(|info| info.status == NodeStatus::Running)
            };
            let leads_now = |report: Option<&LeaderReport>, leader: NodeId| {
                report.is_some_and(|r| r.epoch == current.epoch && r.leader == leader.0)
            };
            match step {
                MigrateStep::AddPeer
                    if current.kind == RegionGroupKind::Schema && !current.elects_leader() =>
                {
                    // Nothing is added: the copy moves the only replica in one command.
                    self.kill_point(KillPoint::MigratePeerAdded)?;
                    step = MigrateStep::CopySchema;
                    self.advance_to(id, procedure(step))?;
                }
                MigrateStep::CopySchema => {
                    if holds(&self.state, new) {
                        // Moved (`schema_region_copied`); the finish was not recorded.
                        return self.commit(ConfigCommand::FinishProcedure { id });
                    }
                    let gone = !self.state.data_nodes().contains_key(&new);
                    if gone || self.waited_longer(id, step, SCHEMA_COPY_TIMEOUT_MS) {
                        tracing::warn!(id, %group, %from, to = %new, "migration: the SchemaRegion was not copied in time; dropped, the region takes changes where it was");
                        return self.commit(ConfigCommand::FinishProcedure { id });
                    }
                    return Ok(());
                }
                MigrateStep::AddPeer => {
                    if !holds(&self.state, new) {
                        if !self.state.data_nodes().contains_key(&new) {
                            tracing::warn!(id, %group, to = %new, "destination DataNode gone; migration abandoned");
                            return self.commit(ConfigCommand::FinishProcedure { id });
                        }
                        self.commit(ConfigCommand::AddRegionReplica { group, replica: to })?;
                        tracing::info!(id, %group, to = %new, "migration: replica added");
                    }
                    self.kill_point(KillPoint::MigratePeerAdded)?;
                    step = MigrateStep::CatchUp;
                    self.advance_to(id, procedure(step))?;
                }
                MigrateStep::CatchUp if current.kind == RegionGroupKind::Schema => {
                    // Moved on by the Raft leader's `SchemaReplicaCaughtUp`.
                    if self.roll_back_if_late(
                        id,
                        &mut step,
                        &procedure,
                        "migration: the new schema replica did not catch up in time; rolling back",
                    )? {
                        continue;
                    }
                    return Ok(());
                }
                MigrateStep::TransferLeader if current.kind == RegionGroupKind::Schema => {
                    // The group elects its leader: the old leader hands leadership over
                    // itself, and the new one reports leading (`ReportSchemaLeader`).
                    if current.leader == from {
                        if self.roll_back_if_late(id, &mut step, &procedure, "migration: the old schema replica did not hand leadership over in time; rolling back")? {
                            continue;
                        }
                        return Ok(());
                    }
                    step = MigrateStep::RemovePeer;
                    self.advance_to(id, procedure(step))?;
                }
                MigrateStep::Cancel
                    if current.kind == RegionGroupKind::Schema && current.leader == new =>
                {
                    // The new replica leads already: finish the move rather than undo it.
                    step = MigrateStep::RemovePeer;
                    self.advance_to(id, procedure(step))?;
                }
                MigrateStep::CatchUp => {
                    let report = reports
                        .get(&group.0)
                        .filter(|report| leads_now(Some(report), current.leader));
                    let caught_up = report.is_some_and(|r| {
                        let target = *self.catch_up_targets.entry(id).or_insert(r.last_index);
                        r.peers
                            .iter()
                            .any(|p| p.node == new.0 && p.shipping && p.durable_index >= target)
                    });
                    let in_sync_ack =
                        self.state.settings().data_replication_ack == ReplicationAck::InSync;
                    let ready = caught_up && (!in_sync_ack || current.in_sync(new));
                    if !ready {
                        if self.roll_back_if_late(
                            id,
                            &mut step,
                            &procedure,
                            "migration: the new replica did not catch up in time; rolling back",
                        )? {
                            continue;
                        }
                        return Ok(());
                    }
                    if !current.in_sync(new) {
                        // `leader` acknowledgement keeps no in-sync set of its own.
                        let out_of_sync = current
                            .out_of_sync
                            .iter()
                            .copied()
                            .filter(|n| *n != new)
                            .collect();
                        self.commit(ConfigCommand::ChangeInSync {
                            group,
                            epoch: current.epoch,
                            version: current.in_sync_version,
                            out_of_sync,
                        })?;
                    }
                    tracing::info!(id, %group, to = %new, "migration: the new replica caught up");
                    self.kill_point(KillPoint::MigrateCaughtUp)?;
                    step = MigrateStep::TransferLeader;
                    self.advance_to(id, procedure(step))?;
                }
                MigrateStep::TransferLeader => {
                    if current.leader == from {
                        if !running(&self.state, new) {
                            if self.roll_back_if_late(id, &mut step, &procedure, "migration: the new replica's DataNode was not Running in time; rolling back")? {
                                continue;
                            }
                            return Ok(());
                        }
                        self.commit(ConfigCommand::ChangeLeaders {
                            changes: vec![(group, new)],
                        })?;
                        tracing::info!(id, %group, to = %new, "migration: leadership moves to the new replica");
                        self.kill_point(KillPoint::MigrateLeaderMoved)?;
                        return Ok(());
                    }
                    if current.leader == new && !leads_now(reports.get(&group.0), new) {
                        // The new leader catches up from the old one before it serves;
                        // the old replica stays until then.
                        if self.roll_back_if_late(
                            id,
                            &mut step,
                            &procedure,
                            "migration: the new replica did not take over in time; rolling back",
                        )? {
                            continue;
                        }
                        return Ok(());
                    }
                    step = MigrateStep::RemovePeer;
                    self.advance_to(id, procedure(step))?;
                }
                MigrateStep::RemovePeer => {
                    if current.leader == from {
                        // Leadership came back (a failover): move it again first.
                        step = MigrateStep::TransferLeader;
                        self.advance_to(id, procedure(step))?;
                        continue;
                    }
                    if holds(&self.state, from) {
                        self.commit(ConfigCommand::RemoveRegionReplica { group, node: from })?;
                    }
                    self.kill_point(KillPoint::MigratePeerRemoved)?;
                    if current.kind == RegionGroupKind::Schema {
                        // Finished by the Raft leader's `SchemaReplicaRemoved` once the
                        // group no longer counts the old replica a voter: until then the
                        // replica may not join again (its leader would still remember
                        // how much of the log it held, and it holds nothing now).
                        return Ok(());
                    }
                    tracing::info!(id, %group, %from, to = %new, "region migration finished");
                    return self.commit(ConfigCommand::FinishProcedure { id });
                }
                MigrateStep::Cancel => {
                    if current.leader == new {
                        if holds(&self.state, from) && running(&self.state, from) {
                            self.commit(ConfigCommand::ChangeLeaders {
                                changes: vec![(group, from)],
                            })?;
                        }
                        return Ok(());
                    }
                    if holds(&self.state, new) && current.replicas.len() > 1 {
                        self.commit(ConfigCommand::RemoveRegionReplica { group, node: new })?;
                    }
                    if current.kind == RegionGroupKind::Schema {
                        // Finished by `SchemaReplicaRemoved`, as `RemovePeer` is.
                        return Ok(());
                    }
                    tracing::warn!(id, %group, %from, to = %new, "region migration rolled back");
                    return self.commit(ConfigCommand::FinishProcedure { id });
                }
            }
        }
    }

    fn advance_removal(
        &mut self,
        id: ProcedureId,
        target: NodeId,
        step: RemoveDataNodeStep,
    ) -> Result<()> {
        match step {
            RemoveDataNodeStep::MoveReplicas => {
                let Some(info) = self.state.data_nodes().get(&target) else {
                    return self.commit(ConfigCommand::FinishProcedure { id });
                };
                if info.status != NodeStatus::Removing {
                    // Leaders move off it in the same command.
                    self.commit(ConfigCommand::SetNodeStatus {
                        node_id: target,
                        status: NodeStatus::Removing,
                    })?;
                }
                let held: Vec<RegionGroupId> = self
                    .state
                    .region_groups()
                    .values()
                    .filter(|g| g.replicas.iter().any(|r| r.data_node_id == target))
                    .map(|g| g.id)
                    .collect();
                if held.is_empty() {
                    self.advance_to(
                        id,
                        Procedure::RemoveDataNode {
                            node: target,
                            step: RemoveDataNodeStep::Forget,
                        },
                    )?;
                    return self.advance_removal(id, target, RemoveDataNodeStep::Forget);
                }
                let mut running = self
                    .state
                    .procedures()
                    .values()
                    .filter(|p| {
                        matches!(p, Procedure::MigrateRegion { removal_of: Some(n), .. } if *n == target)
                    })
                    .count();
                for group in held {
                    if running >= MIGRATIONS_PER_REMOVAL {
                        break;
                    }
                    if self.state.migration_of(group).is_some() {
                        continue;
                    }
                    let current = self.state.region_group(group)?.clone();
                    let Some(replica) = plan_migration_target(&self.state, &current, target) else {
                        tracing::warn!(id, %group, node = %target, "no Running DataNode can take this replica yet; retried");
                        continue;
                    };
                    self.start_migration(group, target, replica, Some(target))?;
                    self.kill_point(KillPoint::RemoveDataNodeMigrationStarted)?;
                    running += 1;
                }
                Ok(())
            }
            RemoveDataNodeStep::Forget => {
                if self.state.data_nodes().contains_key(&target) {
                    self.commit(ConfigCommand::RemoveNode { node_id: target })?;
                    tracing::info!(id, node = %target, "DataNode removed from the cluster");
                }
                self.kill_point(KillPoint::RemoveDataNodeForgotten)?;
                self.commit(ConfigCommand::FinishProcedure { id })
            }
        }
    }

    /// A named point between two commands of a procedure (see [`KillMode`]).
    fn kill_point(&self, point: KillPoint) -> Result<()> {
        match self.kill_mode {
            KillMode::Fail(armed) if armed == point => Err(ConfigNodeError::Killed(point.name())),
            KillMode::Abort(armed) if armed == point => {
                // Whatever was appended reached the OS (a process crash keeps it), as
                // when a real process dies here.
                eprintln!("kill point {} reached: aborting", point.name());
                std::process::abort();
            }
            _ => Ok(()),
        }
    }

    /// `DELETE DATABASE p, ...`: deletes every database matching a pattern;
    /// returns their names. No match at all is [`ConfigNodeError::DatabaseNotExist`].
    pub fn delete_databases(
        &mut self,
        patterns: &[PathPattern],
        env: &mut dyn ProcedureEnv,
    ) -> Result<Vec<String>> {
        let names: Vec<String> = self
            .state
            .databases()
            .keys()
            .filter(|name| patterns.iter().any(|pattern| pattern.matches(name)))
            .cloned()
            .collect();
        if names.is_empty() {
            let wanted: Vec<String> = patterns.iter().map(ToString::to_string).collect();
            return Err(ConfigNodeError::DatabaseNotExist(wanted.join(", ")));
        }
        for name in &names {
            self.delete_database(name, env)?;
        }
        Ok(names)
    }

    /// The database holding `device_path`, creating it at
    /// [`super::model::DEFAULT_DATABASE_LEVEL`] with the cluster defaults if
    /// none exists (auto-creation on first write). Returns the name and
    /// whether it was created.
    pub fn ensure_database_of_device(&mut self, device_path: &str) -> Result<(String, bool)> {
        if let Some(database) = self.state.database_of_device(device_path) {
            return Ok((database.name.clone(), false));
        }
        let name = database_of(device_path)?;
        self.create_database(&name, &DatabaseAttributes::default())?;
        Ok((name, true))
    }

    /// Creates region groups of `kind` until the database has its target
    /// count (AUTO grows with the cluster's cores; CUSTOM is fixed).
    fn grow_region_groups(&mut self, database: &str, kind: RegionGroupKind) -> Result<()> {
        let state = self.state.database(database)?;
        let target = region_group_target(&self.state, state, kind);
        let current = state.region_groups(kind).len() as u32;
        if current >= target {
            return Ok(());
        }
        let groups = plan_region_groups(
            &self.state,
            database,
            kind,
            target - current,
            (self.clock_ms)(),
        )?;
        self.commit(ConfigCommand::CreateRegionGroups { groups })
    }

    /// The SchemaRegionGroup of a series slot, assigning it (and creating
    /// the database's schema region groups) if needed; `true` if anything
    /// changed.
    pub fn get_or_create_schema_partition(
        &mut self,
        database: &str,
        series_slot: u32,
    ) -> Result<(RegionGroupId, bool)> {
        let (groups, changed) = self.get_or_create_schema_partitions(database, &[series_slot])?;
        Ok((groups[0], changed))
    }

    /// Batch form of [`ConfigNode::get_or_create_schema_partition`]: one
    /// group per slot, in order.
    pub fn get_or_create_schema_partitions(
        &mut self,
        database: &str,
        series_slots: &[u32],
    ) -> Result<(Vec<RegionGroupId>, bool)> {
        let state = self.state.database(database)?;
        if let Some(found) = series_slots
            .iter()
            .map(|slot| state.schema_partitions.get(slot).copied())
            .collect::<Option<Vec<_>>>()
        {
            return Ok((found, false));
        }
        self.grow_region_groups(database, RegionGroupKind::Schema)?;
        let assignments = plan_schema_partitions(self.state.database(database)?, series_slots);
        if !assignments.is_empty() {
            self.commit(ConfigCommand::AssignSchemaPartitions {
                database: database.to_string(),
                assignments,
            })?;
        }
        let state = self.state.database(database)?;
        let groups = series_slots
            .iter()
            .map(|slot| state.schema_partitions[slot])
            .collect();
        Ok((groups, true))
    }

    /// The DataRegionGroup of (series slot, time slot), assigning it (and
    /// creating or growing the database's data region groups) if needed;
    /// `true` if anything changed. Existing assignments never move.
    pub fn get_or_create_data_partition(
        &mut self,
        database: &str,
        series_slot: u32,
        time_slot: i64,
    ) -> Result<(RegionGroupId, bool)> {
        let (groups, changed) =
            self.get_or_create_data_partitions(database, &[(series_slot, time_slot)])?;
        Ok((groups[0], changed))
    }

    /// Batch form of [`ConfigNode::get_or_create_data_partition`]: one group
    /// per (series slot, time slot), in order; one journal sync for all new
    /// assignments.
    pub fn get_or_create_data_partitions(
        &mut self,
        database: &str,
        partitions: &[(u32, i64)],
    ) -> Result<(Vec<RegionGroupId>, bool)> {
        let state = self.state.database(database)?;
        if let Some(found) = partitions
            .iter()
            .map(|&(slot, time_slot)| state.data_partition(slot, time_slot))
            .collect::<Option<Vec<_>>>()
        {
            return Ok((found, false));
        }
        self.grow_region_groups(database, RegionGroupKind::Data)?;
        let assignments = plan_data_partitions(self.state.database(database)?, partitions);
        if !assignments.is_empty() {
            self.commit(ConfigCommand::AssignDataPartitions {
                database: database.to_string(),
                assignments,
            })?;
        }
        let state = self.state.database(database)?;
        let groups = partitions
            .iter()
            .map(|&(slot, time_slot)| {
                state
                    .data_partition(slot, time_slot)
                    .expect("assigned above")
            })
            .collect();
        Ok((groups, true))
    }

    /// The DataRegionGroup of a partition, without creating it.
    pub fn data_partition(
        &self,
        database: &str,
        series_slot: u32,
        time_slot: i64,
    ) -> Option<RegionGroupId> {
        self.state
            .databases()
            .get(database)?
            .data_partition(series_slot, time_slot)
    }

    /// The SchemaRegionGroup of a series slot, without creating it.
    pub fn schema_partition(&self, database: &str, series_slot: u32) -> Option<RegionGroupId> {
        self.state
            .databases()
            .get(database)?
            .schema_partitions
            .get(&series_slot)
            .copied()
    }

    /// `SHOW CLUSTER [DETAILS]`.
    pub fn show_cluster(&self, details: bool) -> Table {
        views::show_cluster(&self.view_state(), details)
    }

    /// The cluster gauges of the metrics endpoint (counted from `SHOW CLUSTER` and
    /// `SHOW REGIONS`).
    pub fn cluster_gauges(&self) -> views::ClusterGauges {
        views::cluster_gauges(&self.view_state())
    }

    /// `SHOW DATANODES`.
    pub fn show_data_nodes(&self) -> Table {
        views::show_data_nodes(&self.view_state())
    }

    /// `SHOW CONFIGNODES`.
    pub fn show_config_nodes(&self) -> Table {
        views::show_config_nodes(&self.view_state(), self.leader)
    }

    /// `SHOW [DATA|SCHEMA] REGIONS ...`; `tsfile_size` fills TsFileSize.
    pub fn show_regions(
        &self,
        filter: &RegionFilter<'_>,
        tsfile_size: &dyn Fn(RegionGroupId, NodeId) -> Option<String>,
    ) -> Table {
        views::show_regions(&self.view_state(), filter, tsfile_size)
    }

    /// `SHOW DATABASES [DETAILS] [pattern]`.
    pub fn show_databases(&self, details: bool, pattern: Option<&PathPattern>) -> Table {
        views::show_databases(&self.state, details, pattern)
    }

    /// `SHOW VARIABLES`.
    pub fn show_variables(&self) -> Table {
        views::show_variables(&self.state)
    }

    /// `SHOW ALL TTL`.
    pub fn show_all_ttl(&self) -> Table {
        views::show_all_ttl(&self.state)
    }
}

fn ttl_ms(ttl: Option<Ttl>) -> Option<u64> {
    match ttl {
        Some(Ttl::Millis(millis)) => Some(millis),
        Some(Ttl::Infinite) | None => None,
    }
}

/// Checks that `given` cluster settings equal the `persisted` ones, naming the first key
/// that differs (a restart with other settings, or a node joining with other settings).
pub fn check_settings_unchanged(
    persisted: &ClusterSettings,
    given: &ClusterSettings,
) -> Result<()> {
    let pairs: [(&'static str, String, String); 8] = [
        (
            "data_replication_ack",
            persisted.data_replication_ack.name().to_string(),
            given.data_replication_ack.name().to_string(),
        ),
        (
            "cluster_name",
            persisted.cluster_name.clone(),
            given.cluster_name.clone(),
        ),
        (
            "series_slot_num",
            persisted.series_slot_num.to_string(),
            given.series_slot_num.to_string(),
        ),
        (
            "time_partition_interval",
            persisted.time_partition_interval_ms.to_string(),
            given.time_partition_interval_ms.to_string(),
        ),
        (
            "schema_replication_factor",
            persisted.schema_replication_factor.to_string(),
            given.schema_replication_factor.to_string(),
        ),
        (
            "data_replication_factor",
            persisted.data_replication_factor.to_string(),
            given.data_replication_factor.to_string(),
        ),
        (
            "data_region_consensus_protocol_class",
            persisted.data_region_consensus_protocol_class.clone(),
            given.data_region_consensus_protocol_class.clone(),
        ),
        (
            "data_region_group_extension_policy",
            format!("{:?}", persisted.data_region_group_policy),
            format!("{:?}", given.data_region_group_policy),
        ),
    ];
    for (name, persisted, given) in pairs {
        if persisted != given {
            return Err(ConfigNodeError::SettingsChanged {
                name,
                persisted,
                given,
            });
        }
    }
    Ok(())
}
