use super::*;

fn spec(max_attempts: u32, retry_on_failure: bool) -> TaskSpec {
    TaskSpec {
        command: vec!["true".into()],
        image: None,
        network: NetworkPolicy::None,
        memory_bytes: None,
        cpu_millis: None,
        pids: 64,
        timeout_seconds: 60,
        env: BTreeMap::new(),
        files: BTreeMap::new(),
        labels: BTreeMap::new(),
        account_id: "a".into(),
        site_id: "s".into(),
        ticket_id: None,
        max_attempts,
        retry_on_failure,
    }
}

fn exit(code: i64) -> JobResult {
    JobResult { exit_code: Some(code), ..JobResult::default() }
}

fn run(mut task: Option<Task>, commands: &[TaskCommand]) -> Result<Task, TaskError> {
    for c in commands {
        for e in decide(task.as_ref(), c)? {
            task = apply(task, "t1", 0, &e);
        }
    }
    task.ok_or(TaskError::NotFound)
}

fn created(max_attempts: u32, retry_on_failure: bool) -> Task {
    run(None, &[TaskCommand::Create { spec: spec(max_attempts, retry_on_failure) }]).unwrap()
}

fn dispatch(now_ms: i64) -> TaskCommand {
    TaskCommand::Dispatch { node: "node-1".into(), now_ms }
}

use TaskCommand as C;

#[test]
fn each_way_an_attempt_ends_leads_where_documented() {
    use TaskState::*;
    let finish = |code| C::Finish { attempt: 1, result: exit(code), now_ms: 0 };
    let cancelled = C::Finish { attempt: 1, result: JobResult { cancelled: true, ..exit(137) }, now_ms: 0 };
    let lost = C::ExpireLease { attempt: 1, now_ms: 0 };
    let fenced = C::Finish { attempt: 1, result: JobResult { lease_lost: true, ..exit(137) }, now_ms: 0 };
    let refused = C::Refuse { attempt: 1, reason: "no engine".into(), now_ms: 0 };
    // (max attempts, retry on failure, how attempt 1 ends, state after)
    let table = [
        (3, false, finish(0), Succeeded),
        (3, false, finish(2), Failed),
        (3, true, finish(2), Queued),
        (1, true, finish(2), Failed),
        (3, false, lost.clone(), Queued),
        (1, false, lost, Failed),
        (3, false, fenced.clone(), Queued),
        (1, false, fenced, Failed),
        (3, false, refused.clone(), Queued),
        (1, false, refused, Failed),
        (3, true, cancelled, Cancelled),
    ];
    for (max, retry, end, want) in table {
        let t = run(Some(created(max, retry)), &[dispatch(0), C::Start { attempt: 1 }, end.clone()]).unwrap();
        assert_eq!(t.state, want, "max {max}, retry {retry}, {end:?}");
        assert_eq!(t.attempts.len(), 1);
        assert!(t.attempts[0].outcome.is_some(), "the attempt is closed");
    }
}

#[test]
fn retries_wait_their_backoff_and_keep_every_attempt() {
    let t = run(Some(created(3, false)), &[dispatch(0), C::ExpireLease { attempt: 1, now_ms: 10 }]).unwrap();
    assert_eq!((t.state, t.not_before_ms), (TaskState::Queued, 10 + backoff_ms(1)));
    assert_eq!(decide(Some(&t), &dispatch(10)), Err(TaskError::NotQueued), "not before the backoff");
    let t =
        run(Some(t), &[dispatch(10 + backoff_ms(1)), C::Refuse { attempt: 2, reason: "full".into(), now_ms: 5_000 }])
            .unwrap();
    let t = run(Some(t), &[dispatch(100_000), C::ExpireLease { attempt: 3, now_ms: 100_000 }]).unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.attempts.iter().map(|a| a.n).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(t.reason.as_deref().is_some_and(|r| r.contains("lost")), "{:?}", t.reason);
    assert_eq!(
        t.attempts.iter().map(|a| a.outcome.clone()).collect::<Vec<_>>(),
        vec![
            Some(AttemptOutcome::Lost),
            Some(AttemptOutcome::Refused { reason: "full".into() }),
            Some(AttemptOutcome::Lost)
        ]
    );
    assert!(backoff_ms(1) == 1_000 && backoff_ms(2) == 2_000 && backoff_ms(20) == 30_000);
}

#[test]
fn a_late_success_before_the_retry_is_out_ends_the_task_with_no_second_run() {
    let lost = run(Some(created(3, false)), &[dispatch(0), C::ExpireLease { attempt: 1, now_ms: 0 }]).unwrap();
    assert_eq!(lost.state, TaskState::Queued);
    // A late failure or a run its worker stopped changes nothing: the retry stands.
    assert_eq!(decide(Some(&lost), &C::Finish { attempt: 1, result: exit(1), now_ms: 10 }), Ok(vec![]));
    let stopped = JobResult { lease_lost: true, ..exit(137) };
    assert_eq!(decide(Some(&lost), &C::Finish { attempt: 1, result: stopped, now_ms: 10 }), Ok(vec![]));
    let done = run(Some(lost), &[C::Finish { attempt: 1, result: exit(0), now_ms: 10 }]).unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.attempts.len(), 1, "no retry was dispatched");
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Ran { exit_code: Some(0), succeeded: true }));
}

#[test]
fn late_and_repeated_answers_change_nothing() {
    let t = run(Some(created(3, false)), &[dispatch(0), C::ExpireLease { attempt: 1, now_ms: 0 }, dispatch(60_000)])
        .unwrap();
    // Attempt 1 answers after its lease ran out and attempt 2 is out: ignored.
    assert_eq!(decide(Some(&t), &C::Finish { attempt: 1, result: exit(0), now_ms: 61_000 }), Ok(vec![]));
    assert_eq!(decide(Some(&t), &C::Start { attempt: 1 }), Ok(vec![]));
    let done = run(Some(t), &[C::Finish { attempt: 2, result: exit(0), now_ms: 62_000 }]).unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(decide(Some(&done), &C::Finish { attempt: 2, result: exit(1), now_ms: 63_000 }), Ok(vec![]));
    assert_eq!(decide(Some(&done), &C::ExpireLease { attempt: 2, now_ms: 63_000 }), Ok(vec![]));
}

#[test]
fn cancel_ends_a_queued_task_at_once_and_a_running_one_through_its_node() {
    let queued = run(Some(created(3, false)), &[C::Cancel]).unwrap();
    assert_eq!(queued.state, TaskState::Cancelled);
    assert_eq!(decide(Some(&queued), &C::Cancel), Err(TaskError::Finished(TaskState::Cancelled)));

    let running = run(Some(created(3, false)), &[dispatch(0), C::Start { attempt: 1 }, C::Cancel]).unwrap();
    assert_eq!((running.state, running.cancel_requested), (TaskState::Running, true));
    assert_eq!(decide(Some(&running), &C::Cancel), Ok(vec![]), "asking twice is a no-op");
    // The node went away while cancelling: no retry, the task ends cancelled.
    let lost = run(Some(running), &[C::ExpireLease { attempt: 1, now_ms: 0 }]).unwrap();
    assert_eq!(lost.state, TaskState::Cancelled);
}

#[test]
fn only_a_create_makes_a_task_and_only_queued_tasks_dispatch() {
    assert_eq!(decide(None, &C::Cancel), Err(TaskError::NotFound));
    let t = created(1, false);
    assert_eq!(decide(Some(&t), &C::Create { spec: spec(1, false) }), Err(TaskError::Exists));
    let dispatched = run(Some(t), &[dispatch(0)]).unwrap();
    assert_eq!(dispatched.attempts[0].job_id, "t1/1");
    assert_eq!(decide(Some(&dispatched), &dispatch(0)), Err(TaskError::NotQueued));
}
