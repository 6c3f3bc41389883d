//! Task scenarios in the simulator: jobs on workers with a fake executor (the Docker
//! one is tested against the real engine in node/tests). Invariants, for every task:
//! it reaches exactly one final state once the network heals, two attempts of it
//! never run at the same time, a job (task + attempt) never runs twice, and no
//! accepted task is lost.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

use dispatch_node::actors;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use actors::task::{AttemptOutcome, TaskState};
use dispatch_sim::{Harness, ORCHESTRATOR, Setup};

const S: fn(u64) -> Duration = Duration::from_secs;

fn ready(h: &Harness, hosts: &[&str]) -> bool {
    hosts.iter().all(|host| {
        h.node(host).is_some_and(|n| n.schedulable()) && h.worker_status(host).is_some_and(|s| s.ready().is_ok())
    })
}

fn state(h: &Harness, id: &str) -> Option<TaskState> {
    h.task(id).map(|(t, _)| t.state)
}

fn all_final(h: &Harness, ids: &[&str]) -> bool {
    ids.iter().all(|id| state(h, id).is_some_and(TaskState::is_terminal))
}

/// The invariants, for the tasks `ids`.
fn check_tasks(h: &Harness, ids: &[&str]) {
    for id in ids {
        let (task, states) = h.task(id).unwrap_or_else(|| panic!("accepted task {id} is not in the log"));
        let finals = states.iter().filter(|s| TaskState::parse(s).is_some_and(TaskState::is_terminal)).count();
        assert_eq!(finals, 1, "{id} reached a final state exactly once: {states:?}");
        assert!(task.state.is_terminal(), "{id} is {:?}", task.state);
    }
    let runs = h.runs();
    let mut seen = HashSet::new();
    for r in &runs {
        assert!(seen.insert(r.job_id.clone()), "job {} ran twice: {runs:#?}", r.job_id);
    }
    let mut by_task: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for r in &runs {
        by_task.entry(r.job_id.rsplit_once('/').map_or(r.job_id.as_str(), |(t, _)| t)).or_default().push(r);
    }
    for (task, mut rs) in by_task {
        rs.sort_by_key(|r| r.start);
        for pair in rs.windows(2) {
            let end = pair[0].end.unwrap_or(Duration::MAX);
            assert!(end <= pair[1].start, "two attempts of {task} overlapped: {:?} and {:?}", pair[0], pair[1]);
        }
    }
}

fn outcomes(h: &Harness, id: &str) -> Vec<Option<AttemptOutcome>> {
    h.task(id).map(|(t, _)| t.attempts.into_iter().map(|a| a.outcome).collect()).unwrap_or_default()
}

fn host_of(h: &Harness, node: &str) -> String {
    h.nodes().into_iter().find(|n| n.id == node).map(|n| n.capabilities.hostname).unwrap_or_default()
}

fn start(seed: u64) -> Harness {
    let setup = Setup::new(seed);
    let mut h = Harness::new(&setup);
    h.worker("w1");
    h.worker("w2");
    h.run_until("both workers ready for jobs", S(60), |h| ready(h, &["w1", "w2"]));
    h
}

#[test]
fn a_partition_between_dispatch_and_start_moves_the_job_after_its_lease() {
    dispatch_sim::sweep("a_partition_between_dispatch_and_start_moves_the_job_after_its_lease", 41, |seed| {
        let mut h = start(seed);
        // node-1 is chosen first (least busy, then by id): cut it off as the job is handed out.
        let first = host_of(&h, "node-1");
        h.sim.partition(ORCHESTRATOR, first.as_str());
        h.submit("t1", 2_000, 0, 3);
        h.run_until("t1 final", S(60), |h| all_final(h, &["t1"]));
        h.sim.repair(ORCHESTRATOR, first.as_str());
        h.run_for(S(10));
        assert_eq!(state(&h, "t1"), Some(TaskState::Succeeded));
        let o = outcomes(&h, "t1");
        assert_eq!(o.first(), Some(&Some(AttemptOutcome::Lost)), "the unreachable attempt was lost, not run: {o:?}");
        assert!(h.runs().iter().all(|r| r.host != first), "the cut-off worker never ran it");
        check_tasks(&h, &["t1"]);
    });
}

#[test]
fn a_worker_crash_mid_job_is_retried_elsewhere_after_the_lease() {
    dispatch_sim::sweep("a_worker_crash_mid_job_is_retried_elsewhere_after_the_lease", 43, |seed| {
        let mut h = start(seed);
        h.submit("t1", 20_000, 0, 3);
        h.run_until("t1 running", S(30), |h| state(h, "t1") == Some(TaskState::Running));
        let victim = h.runs()[0].host.clone();
        h.crash(&victim);
        h.run_for(S(2));
        h.sim.bounce(victim.as_str());
        h.run_until("t1 final", S(120), |h| all_final(h, &["t1"]));
        assert_eq!(state(&h, "t1"), Some(TaskState::Succeeded));
        assert_eq!(outcomes(&h, "t1")[0], Some(AttemptOutcome::Lost));
        check_tasks(&h, &["t1"]);
    });
}

#[test]
fn an_orchestrator_crash_with_jobs_in_flight_loses_nothing_and_reruns_nothing() {
    dispatch_sim::sweep("an_orchestrator_crash_with_jobs_in_flight_loses_nothing_and_reruns_nothing", 47, |seed| {
        let mut h = start(seed);
        let ids = ["t1", "t2", "t3"];
        for id in ids {
            h.submit(id, 8_000, 0, 3);
        }
        h.run_until("all running", S(30), |h| ids.iter().all(|id| state(h, id) == Some(TaskState::Running)));
        h.crash(ORCHESTRATOR);
        h.run_for(S(2));
        h.sim.bounce(ORCHESTRATOR);
        h.run_until("all final", S(120), |h| all_final(h, &ids));
        for id in ids {
            assert_eq!(state(&h, id), Some(TaskState::Succeeded), "{id}");
            assert_eq!(outcomes(&h, id).len(), 1, "{id}: the running job was kept, not run again");
        }
        assert_eq!(h.runs().len(), 3);
        check_tasks(&h, &ids);
    });
}

#[test]
fn duplicated_and_delayed_messages_never_run_a_job_twice() {
    // Seed 141, CI's first, lost a redelivery's connection mid-push (see `redeliver`).
    dispatch_sim::sweep("duplicated_and_delayed_messages_never_run_a_job_twice", 141, |seed| {
        let setup = Setup { fail_rate: 0.05, max_latency: Duration::from_millis(150), ..Setup::new(seed) };
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.worker("w2");
        h.run_until("workers ready", S(120), |h| ready(h, &["w1", "w2"]));
        let ids = ["t1", "t2", "t3", "t4", "t5"];
        for id in ids {
            h.submit(id, 2_000, 0, 5);
        }
        h.run_until("all final", S(300), |h| all_final(h, &ids));
        let runs_before = h.runs().len();
        // Every finished job offered again: the stored result comes back, nothing runs.
        for id in ids {
            let (task, _) = h.task(id).unwrap();
            let last = task.attempts.last().unwrap();
            h.redeliver(&last.job_id, &last.node);
        }
        h.run_until("redeliveries answered", S(60), |h| h.redelivered().len() == ids.len());
        assert!(h.redelivered().iter().all(|a| a == "already finished"), "{:?}", h.redelivered());
        assert_eq!(h.runs().len(), runs_before, "no job ran again");
        check_tasks(&h, &ids);
    });
}

/// Leases run on the monotonic clock: the orchestrator's wall clock stepping an hour
/// ahead, then two back, while a job runs expires nothing, and the job runs once.
#[test]
fn a_clock_jump_expires_no_lease() {
    dispatch_sim::sweep("a_clock_jump_expires_no_lease", 61, |seed| {
        let mut h = start(seed);
        h.submit("t1", 10_000, 0, 3);
        h.run_until("t1 running", S(30), |h| state(h, "t1") == Some(TaskState::Running));
        h.jump_clock(3_600_000);
        h.run_for(S(3));
        h.jump_clock(-7_200_000);
        h.run_until("t1 final", S(60), |h| all_final(h, &["t1"]));
        assert_eq!(state(&h, "t1"), Some(TaskState::Succeeded));
        assert_eq!((outcomes(&h, "t1").len(), h.runs().len()), (1, 1), "one attempt, one run");
        check_tasks(&h, &["t1"]);
    });
}

/// The worker is cut off while its job runs, and the job ends before the lease is due.
/// The result, kept on the worker's disk, is reported once the network heals and the
/// task ends with it; were the report too late, the attempt was lost and the one rerun's
/// result stands. Never two results for a task, never overlapping runs.
#[test]
fn a_worker_partitioned_while_its_job_finishes_reports_it_after_the_heal() {
    dispatch_sim::sweep("a_worker_partitioned_while_its_job_finishes_reports_it_after_the_heal", 67, |seed| {
        let mut h = start(seed);
        h.submit("t1", 2_500, 0, 3);
        h.run_until("t1 running", S(30), |h| state(h, "t1") == Some(TaskState::Running));
        let host = h.runs()[0].host.clone();
        h.sim.partition(ORCHESTRATOR, host.as_str());
        h.run_until("the job ends while its worker is cut off", S(10), |h| h.runs()[0].end.is_some());
        h.sim.repair(ORCHESTRATOR, host.as_str());
        h.run_until("t1 final", S(60), |h| all_final(h, &["t1"]));
        assert_eq!(state(&h, "t1"), Some(TaskState::Succeeded));
        let o = outcomes(&h, "t1");
        match o[0] {
            Some(AttemptOutcome::Ran { succeeded: true, .. }) => assert_eq!(h.runs().len(), 1, "{o:?}"),
            Some(AttemptOutcome::Lost) => assert_eq!((o.len(), h.runs().len()), (2, 2), "{o:?}"),
            _ => panic!("the first attempt ran or was lost: {o:?}"),
        }
        check_tasks(&h, &["t1"]);
    });
}

/// Messages delayed up to 1.5 s and some lost, while one worker's link is cut and
/// restored twice: packets of an old connection arrive after the new one's. Every task
/// still ends once, and no job runs twice or overlaps another attempt.
#[test]
fn messages_reordered_across_reconnects_never_run_a_job_twice() {
    dispatch_sim::sweep("messages_reordered_across_reconnects_never_run_a_job_twice", 71, |seed| {
        let setup = Setup { fail_rate: 0.02, max_latency: Duration::from_millis(1_500), ..Setup::new(seed) };
        let mut h = Harness::new(&setup);
        h.worker("w1");
        h.worker("w2");
        h.run_until("workers ready", S(300), |h| ready(h, &["w1", "w2"]));
        let ids = ["t1", "t2", "t3", "t4", "t5", "t6"];
        for id in ids {
            h.submit(id, 3_000, 0, 5);
        }
        for _ in 0..2 {
            h.run_for(S(2));
            h.sim.partition(ORCHESTRATOR, "w1");
            h.run_for(S(3));
            h.sim.repair(ORCHESTRATOR, "w1");
        }
        h.run_until("all final", S(600), |h| all_final(h, &ids));
        check_tasks(&h, &ids);
    });
}
