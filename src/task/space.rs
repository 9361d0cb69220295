//! Parla-style task spaces: tasks named by integer or tuple keys, depended on before they
//! are spawned.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::TaskError;
use super::handle::TaskRef;
use super::node::Node;

/// A key in a [`TaskSpace`]: an integer or a tuple of integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskKey {
    /// `ts[i]`
    Int(i64),
    /// `ts[(i, j, ...)]`
    Tuple(Vec<i64>),
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskKey::Int(i) => write!(f, "[{i}]"),
            TaskKey::Tuple(t) => {
                let parts: Vec<String> = t.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl From<$t> for TaskKey {
            fn from(v: $t) -> TaskKey { TaskKey::Int(v as i64) }
        }
    )*};
}
int_key!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

macro_rules! tuple_key {
    ($(($($n:ident),+)),*) => {$(
        impl<$($n: Into<i64>),+> From<($($n,)+)> for TaskKey {
            #[allow(non_snake_case)]
            fn from(($($n,)+): ($($n,)+)) -> TaskKey { TaskKey::Tuple(vec![$($n.into()),+]) }
        }
    )*};
}
tuple_key!((A, B), (A, B, C), (A, B, C, D));

impl<const N: usize> From<[i64; N]> for TaskKey {
    fn from(v: [i64; N]) -> TaskKey {
        TaskKey::Tuple(v.to_vec())
    }
}

/// A namespace of tasks addressed by key, like Parla's `TaskSpace`.
///
/// A task may depend on a key before any task is spawned under it; it runs once that task is
/// spawned and finished. Cloning shares the space.
///
/// ```
/// use hetflow::{Runtime, TaskSpace};
/// let rt = Runtime::builder().build().unwrap();
/// let ts = TaskSpace::new("T");
/// // T[1] depends on T[0], which does not exist yet.
/// let t1 = rt.task("second").key(&ts, 1).after_key(&ts, 0).cpu(|_| 2).spawn();
/// let t0 = rt.task("first").key(&ts, 0).cpu(|_| 1).spawn();
/// assert_eq!(t1.wait().unwrap(), 2);
/// assert!(ts.get(0).is_done());
/// # drop(t0);
/// ```
#[derive(Clone)]
pub struct TaskSpace {
    inner: Arc<SpaceInner>,
}

struct SpaceInner {
    name: String,
    tasks: Mutex<HashMap<TaskKey, Arc<Node>>>,
}

impl fmt::Debug for TaskSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TaskSpace({}, {} keys)",
            self.inner.name,
            self.inner.tasks.lock().len()
        )
    }
}

impl TaskSpace {
    /// An empty space; `name` appears in task names and errors.
    pub fn new(name: impl Into<String>) -> Self {
        TaskSpace {
            inner: Arc::new(SpaceInner {
                name: name.into(),
                tasks: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The space's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn node(&self, key: &TaskKey) -> Arc<Node> {
        self.inner
            .tasks
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Node::placeholder(&self.inner.name, key))
            .clone()
    }

    /// The node for a task being spawned under `key`; errors if one was spawned already. A
    /// key abandoned by a runtime that shut down (its waiters failed with
    /// [`TaskError::NeverSpawned`]) gets a fresh node.
    pub(crate) fn claim(&self, key: &TaskKey) -> Result<Arc<Node>, TaskError> {
        let mut tasks = self.inner.tasks.lock();
        let node = tasks
            .entry(key.clone())
            .or_insert_with(|| Node::placeholder(&self.inner.name, key))
            .clone();
        match node.try_claim() {
            Ok(()) => Ok(node),
            Err(true) => {
                let fresh = Node::placeholder(&self.inner.name, key);
                // A node nobody else has seen yet: the claim cannot fail.
                let _ = fresh.try_claim();
                tasks.insert(key.clone(), fresh.clone());
                Ok(fresh)
            }
            Err(false) => Err(TaskError::DuplicateKey {
                space: self.inner.name.clone(),
                key: key.to_string(),
            }),
        }
    }

    /// The task under `key` (a placeholder if none is spawned yet).
    pub fn get(&self, key: impl Into<TaskKey>) -> TaskRef {
        TaskRef {
            node: self.node(&key.into()),
        }
    }

    /// Whether a task was spawned under `key`.
    pub fn contains(&self, key: impl Into<TaskKey>) -> bool {
        self.inner
            .tasks
            .lock()
            .get(&key.into())
            .is_some_and(|n| n.is_spawned())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until the task under `key` is spawned and finished.
    ///
    /// If no task is ever spawned under `key` but tasks of a runtime wait for it, dropping
    /// that runtime ends the wait with [`TaskError::NeverSpawned`] (and the waiting tasks fail
    /// naming the key); [`crate::RuntimeHandle::wait_idle_checked`] lists such keys before
    /// that. A key that no task waits for is not known to any runtime: waiting for it blocks
    /// until a task is spawned under it.
    pub fn wait(&self, key: impl Into<TaskKey>) -> Result<(), TaskError> {
        self.get(key).wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_display_and_convert() {
        assert_eq!(TaskKey::from(3).to_string(), "[3]");
        assert_eq!(TaskKey::from((1, 2)).to_string(), "[1, 2]");
        assert_eq!(
            TaskKey::from((1u8, 2i32, 3i64)),
            TaskKey::Tuple(vec![1, 2, 3])
        );
        assert_eq!(TaskKey::from([4, 5]), TaskKey::Tuple(vec![4, 5]));
    }

    #[test]
    fn claim_twice_is_an_error() {
        let ts = TaskSpace::new("T");
        assert!(ts.claim(&TaskKey::from(1)).is_ok());
        let err = ts.claim(&TaskKey::from(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task space `T`: key [1] was already spawned"
        );
        assert!(ts.contains(1));
        assert!(!ts.contains(2));
    }
}
