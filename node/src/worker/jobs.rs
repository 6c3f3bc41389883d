//! The worker's side of jobs: accept a job once (a redelivered job gets its stored
//! result, never a second run), run it through the node's executor, keep the result
//! on disk before reporting it, report until the orchestrator has it, and stop any
//! job whose lease this worker could not renew in time.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::proto::{JobAnswer, JobResult, JobSpec, Request, Response};
use cluster::transport;
use quinn::Connection;
use tokio::sync::watch;
use tokio::time::Instant;

use super::store::WorkerStore;

/// A job's run, boxed so executors can be swapped (Docker on a real host, a fake in
/// simulations).
pub type JobRun<'a> = Pin<Box<dyn Future<Output = JobResult> + Send + 'a>>;

/// What [`Executor::release`] does, boxed like a run.
pub type Release<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs jobs on this node.
pub trait Executor: Send + Sync + 'static {
    /// Runs `job` to the end; `cancel` turning true means stop it now.
    fn run(&self, job: JobSpec, cancel: watch::Receiver<bool>) -> JobRun<'_>;

    /// The job's result is stored: whatever else still holds it (a container) may go.
    fn release<'a>(&'a self, _job_id: &'a str) -> Release<'a> {
        Box::pin(async {})
    }

    /// The job may run until `until_ms` (Unix ms) and must be stopped then even if this
    /// worker is no longer there to do it.
    fn hold(&self, _job_id: &str, _until_ms: i64) {}
}

/// The wall-clock time (Unix ms) of `at`, for a process that cannot share our `Instant`s.
fn wall_ms(at: Instant) -> i64 {
    let now = Instant::now();
    let offset = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match at >= now {
        true => crate::clock::now_ms().saturating_add(offset(at - now)),
        false => crate::clock::now_ms().saturating_sub(offset(now - at)),
    }
}

struct Running {
    cancel: watch::Sender<bool>,
    lease: Duration,
    /// When it was accepted: the orchestrator's lease on it starts no earlier.
    since: Instant,
    /// Stopped for want of a lease (not cancelled by anyone).
    fenced: bool,
    /// The hold last given to the executor: it is written again only when it moves.
    held: Option<Instant>,
}

/// The jobs of one worker.
pub struct Jobs {
    store: Arc<WorkerStore>,
    executor: Option<Arc<dyn Executor>>,
    running: Mutex<HashMap<String, Running>>,
    /// When the last heartbeat that the orchestrator answered was sent: leases were
    /// renewed at or after that moment.
    renewed: Mutex<Instant>,
    /// The connection results are reported on, while there is one.
    conn: Mutex<Option<Connection>>,
}

impl Jobs {
    /// Jobs run by `executor` (none: every job is refused, the node has no engine).
    pub fn new(store: Arc<WorkerStore>, executor: Option<Arc<dyn Executor>>) -> Arc<Self> {
        Arc::new(Jobs {
            store,
            executor,
            running: Mutex::new(HashMap::new()),
            renewed: Mutex::new(Instant::now()),
            conn: Mutex::new(None),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids of the jobs running now (listed in every heartbeat).
    pub fn running_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.running().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// A heartbeat sent at `sent` was answered: every running job's lease was renewed.
    pub fn renewed(&self, sent: Instant) {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = sent;
    }

    /// Answers a job offer.
    pub fn offer(self: &Arc<Self>, job: JobSpec, lease_ms: u64, max_running: u32) -> JobAnswer {
        match self.store.job_result(&job.job_id) {
            Ok(Some(result)) => return JobAnswer::AlreadyFinished(result),
            Ok(None) => {}
            Err(e) => return JobAnswer::Refused(e.to_string()),
        }
        let Some(executor) = self.executor.clone() else {
            return JobAnswer::Refused("no container engine on this node".into());
        };
        let mut running = self.running();
        if running.contains_key(&job.job_id) {
            return JobAnswer::Accepted;
        }
        if running.len() >= max_running as usize {
            return JobAnswer::Refused(format!("no free slot ({max_running} jobs running)"));
        }
        // The lease runs from the last renewal this worker saw answered, not from now: an
        // offer read late (by a worker frozen or cut off meanwhile) must not start a run the
        // orchestrator may already have given up on and retried elsewhere.
        let since = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        let held_until = since + Duration::from_millis(lease_ms * 4 / 5);
        if Instant::now() >= held_until {
            return JobAnswer::Refused("the offer arrived after its lease ran out".into());
        }
        let (cancel, cancelled) = watch::channel(false);
        let lease = Duration::from_millis(lease_ms);
        running.insert(job.job_id.clone(), Running { cancel, lease, since, fenced: false, held: None });
        drop(running);
        // Held for most of the lease until the fence loop sets the exact time.
        executor.hold(&job.job_id, wall_ms(held_until));
        let jobs = self.clone();
        tokio::spawn(async move {
            let job_id = job.job_id.clone();
            tracing::info!(job = %job_id, "job started");
            let mut result = executor.run(job, cancelled).await;
            if jobs.running().get(&job_id).is_some_and(|r| r.fenced) {
                // Stopped for want of a lease: lost (retried), unless it ended on its own
                // before the kill landed; then its result stands, and no second run follows.
                result.cancelled = false;
                result.lease_lost = matches!(result.exit_code, None | Some(137));
            }
            jobs.finish(&job_id, result).await;
        });
        JobAnswer::Accepted
    }

    /// Stops a running job (a cancel from the orchestrator). Its hold ends now: should
    /// this worker die before it stops the job, the fence does.
    pub fn cancel(&self, job_id: &str) -> JobAnswer {
        match self.running().get_mut(job_id) {
            Some(r) => {
                let _ = r.cancel.send(true);
                if let Some(executor) = &self.executor {
                    let now = Instant::now();
                    executor.hold(job_id, wall_ms(now));
                    r.held = Some(now);
                }
                JobAnswer::Accepted
            }
            None => JobAnswer::Unknown,
        }
    }

    /// Stops every job whose lease may have run out on the orchestrator: it will run
    /// the task again elsewhere, and two attempts must never overlap. A heartbeat
    /// interval of margin keeps this side earlier than the orchestrator's deadline.
    pub fn fence(&self, margin: Duration) {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        for (job_id, r) in self.running().iter_mut() {
            // A job being stopped is no longer this worker's to hold: a renewal that comes
            // after (a frozen worker waking up) must not move its hold forward again.
            if *r.cancel.borrow() {
                continue;
            }
            let until = (renewed.max(r.since) + r.lease).checked_sub(margin).unwrap_or(r.since);
            if let Some(executor) = self.executor.as_ref().filter(|_| r.held != Some(until)) {
                executor.hold(job_id, wall_ms(until));
                r.held = Some(until);
            }
            if Instant::now() >= until && !*r.cancel.borrow() {
                tracing::warn!(job = %job_id, "lease not renewed in time; stopping the job");
                metrics::counter!("dispatch_worker_jobs_fenced_total").increment(1);
                r.fenced = true;
                let _ = r.cancel.send(true);
            }
        }
    }

    async fn finish(&self, job_id: &str, result: JobResult) {
        // On disk first: from now on a redelivery gets this result, and a restart reports
        // it. Only then may the executor drop its own copy (a stopped container).
        let stored = self.store.save_job_result(job_id, &result).await;
        self.running().remove(job_id);
        match stored {
            Ok(()) => {
                if let Some(executor) = &self.executor {
                    executor.release(job_id).await;
                }
            }
            Err(e) => tracing::error!(job = %job_id, error = %e, "job result not stored; its container keeps it"),
        }
        tracing::info!(job = %job_id, exit_code = ?result.exit_code, "job finished");
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(conn) = conn {
            self.report(&conn, job_id, result).await;
        }
    }

    async fn report(&self, conn: &Connection, job_id: &str, result: JobResult) {
        let request = Request::JobFinished { job_id: job_id.to_owned(), result };
        match transport::call(conn, &request).await {
            Ok(Response::Recorded) => {
                if let Err(e) = self.store.mark_reported(job_id).await {
                    tracing::warn!(job = %job_id, error = %e, "report not marked; it will be sent again");
                }
            }
            other => {
                tracing::warn!(job = %job_id, answer = ?other.map(|r| format!("{r:?}")), "result not recorded yet; will report again")
            }
        }
    }

    /// A new connection: results go there, starting with every one not yet recorded.
    pub async fn connected(&self, conn: &Connection) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        match self.store.unreported() {
            Ok(results) => {
                for (job_id, result) in results {
                    self.report(conn, &job_id, result).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read unreported results"),
        }
    }

    /// The connection ended.
    pub fn disconnected(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs until cancelled and writes down every hold it is given.
    #[derive(Default)]
    struct Holds(Mutex<Vec<i64>>);

    impl Executor for Holds {
        fn run(&self, _job: JobSpec, mut cancel: watch::Receiver<bool>) -> JobRun<'_> {
            Box::pin(async move {
                let _ = cancel.wait_for(|c| *c).await;
                JobResult { cancelled: true, ..JobResult::default() }
            })
        }

        fn hold(&self, _job_id: &str, until_ms: i64) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(until_ms);
        }
    }

    fn job(id: &str) -> JobSpec {
        JobSpec {
            job_id: id.into(),
            task_id: "t".into(),
            attempt: 1,
            command: vec!["true".into()],
            image: "i".into(),
            network: cluster::proto::NetworkPolicy::None,
            memory_bytes: 0,
            cpu_millis: 0,
            pids: 0,
            timeout_ms: 1000,
            env: Default::default(),
            files: Default::default(),
            output_cap: 0,
        }
    }

    /// The netns test's frozen worker woke up, renewed its session and pushed forward
    /// the hold of a job it had already stopped; the job's container then started late
    /// and ran to the end beside its retry. A stopped job's hold stays where it ended.
    #[tokio::test]
    async fn a_renewal_after_a_job_was_stopped_does_not_move_its_hold() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Arc::new(WorkerStore::open_inline(dir.path()).expect("a worker store"));
        let holds = Arc::new(Holds::default());
        let jobs = Jobs::new(store, Some(holds.clone()));
        assert!(matches!(jobs.offer(job("t/1"), 1500, 2), JobAnswer::Accepted));
        let last = || *holds.0.lock().unwrap_or_else(|e| e.into_inner()).last().expect("a hold");
        assert!(last() > wall_ms(Instant::now()), "an accepted job is held ahead");

        // The orchestrator cancels it: from now on the fence may stop it.
        assert!(matches!(jobs.cancel("t/1"), JobAnswer::Accepted));
        let at_cancel = last();
        assert!(at_cancel <= wall_ms(Instant::now()), "a cancelled job's hold ends at once");

        // A heartbeat answered later renews the session, not the stopped job.
        jobs.renewed(Instant::now() + Duration::from_secs(1));
        jobs.fence(Duration::from_millis(300));
        assert_eq!(last(), at_cancel, "the hold of a stopped job moved forward");
    }
}
