//! Handles to spawned tasks: wait on them, await them, depend on them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::marker::PhantomData;

use super::error::TaskError;
use super::node::Node;
use crate::device::DeviceId;

/// The typed handle `spawn()` returns: wait for the task's value, or `.await` it.
///
/// ```
/// let rt = hetflow::Runtime::builder().cpu_workers(2).build().unwrap();
/// let a = rt.task("a").cpu(|_| 20).spawn();
/// let b = rt.task("b").after(&a).cpu(|_| 22).spawn();
/// let both = pollster::block_on(futures::future::join(a, b));
/// assert_eq!(both.0.unwrap() + both.1.unwrap(), 42);
/// ```
pub struct TaskHandle<T> {
    pub(crate) node: Arc<Node>,
    pub(crate) _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task", &self.node.name())
            .field("done", &self.node.is_done())
            .finish()
    }
}

impl<T: 'static> TaskHandle<T> {
    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until the task finished and returns its value or its error. On a CPU worker
    /// (inside a body) the worker runs other tasks while it waits, so this cannot deadlock the
    /// pool.
    pub fn wait(self) -> Result<T, TaskError> {
        self.node.wait_done()?;
        self.take()
    }

    fn take(&self) -> Result<T, TaskError> {
        self.node
            .take_value()
            .and_then(|v| v.downcast::<T>().ok())
            .map(|b| *b)
            .ok_or_else(|| TaskError::ValueTaken {
                task: self.node.name().to_string(),
            })
    }

    /// An untyped, cloneable reference to the task (for dependencies and waiting).
    pub fn task_ref(&self) -> TaskRef {
        TaskRef {
            node: self.node.clone(),
        }
    }

    /// Whether the task has finished (successfully or not).
    pub fn is_done(&self) -> bool {
        self.node.is_done()
    }

    /// The task's name.
    pub fn name(&self) -> String {
        self.node.name().to_string()
    }

    /// Where the task ran, once it has started (None before, or if it never ran).
    pub fn device(&self) -> Option<DeviceId> {
        self.node.ran_on()
    }
}

impl<T: 'static> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.node.register_waker(cx.waker()) {
            return Poll::Pending;
        }
        Poll::Ready(match self.node.result() {
            Some(Ok(())) => self.take(),
            Some(Err(e)) => Err(e),
            None => Err(TaskError::ShutDown {
                task: self.node.name().to_string(),
            }),
        })
    }
}

/// An untyped reference to a task: cloneable, usable as a dependency, waitable.
#[derive(Clone)]
pub struct TaskRef {
    pub(crate) node: Arc<Node>,
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRef")
            .field("task", &self.node.name())
            .field("done", &self.node.is_done())
            .finish()
    }
}

impl TaskRef {
    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until the task finished; Ok if it succeeded.
    pub fn wait(&self) -> Result<(), TaskError> {
        self.node.wait_done()
    }

    /// Whether the task has finished.
    pub fn is_done(&self) -> bool {
        self.node.is_done()
    }

    /// The task's name.
    pub fn name(&self) -> String {
        self.node.name().to_string()
    }

    /// Where the task ran, once it has started.
    pub fn device(&self) -> Option<DeviceId> {
        self.node.ran_on()
    }
}

impl Future for TaskRef {
    type Output = Result<(), TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.node.register_waker(cx.waker()) {
            return Poll::Pending;
        }
        Poll::Ready(self.node.result().unwrap_or_else(|| {
            Err(TaskError::ShutDown {
                task: self.node.name().to_string(),
            })
        }))
    }
}

/// Anything a task can depend on: a [`TaskHandle`] or a [`TaskRef`].
pub trait Dependency {
    /// The task as an untyped reference.
    fn task_ref(&self) -> TaskRef;
}

impl<T: 'static> Dependency for TaskHandle<T> {
    fn task_ref(&self) -> TaskRef {
        TaskHandle::task_ref(self)
    }
}

impl Dependency for TaskRef {
    fn task_ref(&self) -> TaskRef {
        self.clone()
    }
}
