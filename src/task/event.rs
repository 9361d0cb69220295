//! Events: dependencies completed from outside the task graph.
//!
//! An [`Event`] is a node of the graph without a body. Tasks depend on it like on any task
//! (`.after(&event)`); it completes when its [`EventTrigger`] fires. The distributed layer
//! uses one per expected message: the task that consumes the message's data is spawned at
//! once, in program order, and runs when the message arrives.
//!
//! Nothing waits forever on an event whose trigger is gone: dropping an [`EventTrigger`]
//! without firing it fails the event with [`TaskError::ShutDown`].

use super::error::TaskError;
use super::handle::{Dependency, TaskRef};
use super::node::Node;
use std::sync::Arc;

/// A dependency that something outside the graph completes.
///
/// ```
/// use hetflow::{task::Event, Runtime};
/// let rt = Runtime::builder().cpu_workers(1).build().unwrap();
/// let (arrived, trigger) = Event::new("message arrived");
/// let t = rt.task("consume").after(&arrived).cpu(|_| 7).spawn();
/// assert!(!t.is_done());
/// trigger.complete();
/// assert_eq!(t.wait().unwrap(), 7);
/// ```
#[derive(Clone, Debug)]
pub struct Event {
    task: TaskRef,
}

/// Fires an [`Event`], once. Dropping it unfired fails the event.
#[derive(Debug)]
pub struct EventTrigger {
    node: Option<Arc<Node>>,
}

impl Event {
    /// A new event named `name` (the name dependents report if it fails) and its trigger.
    pub fn new(name: impl Into<String>) -> (Event, EventTrigger) {
        let node = Node::event(name.into());
        (
            Event {
                task: TaskRef { node: node.clone() },
            },
            EventTrigger { node: Some(node) },
        )
    }

    /// Whether the event has fired.
    pub fn is_done(&self) -> bool {
        self.task.is_done()
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until the event fired; its outcome.
    pub fn wait(&self) -> Result<(), TaskError> {
        self.task.wait()
    }
}

impl Dependency for Event {
    fn task_ref(&self) -> TaskRef {
        self.task.clone()
    }
}

impl EventTrigger {
    /// Completes the event: its dependents may run.
    pub fn complete(mut self) {
        if let Some(n) = self.node.take() {
            n.complete(Ok(()));
        }
    }

    /// Fails the event with `err`: its dependents fail naming it (or, for
    /// [`TaskError::DependencyFailed`] and [`TaskError::Remote`], naming the root inside).
    pub fn fail(mut self, err: TaskError) {
        if let Some(n) = self.node.take() {
            n.complete(Err(err));
        }
    }
}

impl Drop for EventTrigger {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            let task = n.name().to_string();
            n.complete(Err(TaskError::ShutDown { task }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;

    #[test]
    fn a_failed_event_fails_its_dependents_naming_it() {
        let rt = Runtime::builder().cpu_workers(1).no_gpu().build().unwrap();
        let (ev, trig) = Event::new("arrival");
        let t = rt.task("after").after(&ev).cpu(|_| ()).spawn();
        trig.fail(TaskError::Panicked {
            task: "arrival".into(),
            message: "boom".into(),
        });
        let err = t.wait().unwrap_err();
        assert_eq!(err.root_task(), Some("arrival"));
    }

    #[test]
    fn a_remote_failure_is_the_root_not_the_event() {
        let rt = Runtime::builder().cpu_workers(1).no_gpu().build().unwrap();
        let (ev, trig) = Event::new("recv x from rank 1");
        let t = rt.task("use x").after(&ev).cpu(|_| ()).spawn();
        trig.fail(TaskError::Remote {
            task: "potrf(0)".into(),
            rank: 1,
            message: "not positive definite".into(),
        });
        let err = t.wait().unwrap_err();
        assert_eq!(err.root_task(), Some("potrf(0)"));
        assert!(err.to_string().contains("rank 1"), "{err}");
    }

    #[test]
    fn a_dropped_trigger_ends_the_wait() {
        let (ev, trig) = Event::new("never");
        drop(trig);
        assert!(matches!(ev.wait(), Err(TaskError::ShutDown { .. })));
    }
}
