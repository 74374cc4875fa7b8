//! The compare-and-swap loop behind [`Store::update`](super::Store::update).

use super::bindings::{atomics, store};

/// How many times [`Store::update`](super::Store::update) tries its change
/// before it gives up with [`Error::Contended`](super::Error::Contended).
///
/// Each failed try means another writer's swap of the same key landed
/// between this one's read and its swap, and a store commits one swap of a
/// key at a time: of `n` requests updating a key at once, the last to win
/// tries `n` times. Wedge runs at most 1000 instances at once by default
/// (`--max-instances`), so an update that loses this many races in a row
/// loses to more writers than a server runs together: a key that hot (or
/// written from many servers) wants [`increment`](super::Store::increment)
/// or a different layout. The bound is a backstop, not a timer: the
/// route's `timeout` ends a slow loop first.
pub const UPDATE_ATTEMPTS: u32 = 1000;

/// One compare-and-swap on a key: the host's `cas` resource, or a fake in
/// the tests.
pub(super) trait Swap: Sized {
    /// The key's value when this swap began.
    fn current(&self) -> Result<Option<Vec<u8>>, store::Error>;

    /// Writes `value` if the key still holds [`current`](Swap::current).
    fn swap(self, value: &[u8]) -> Result<(), Lost<Self>>;
}

/// Why a [`Swap::swap`] wrote nothing.
pub(super) enum Lost<S> {
    /// Another writer changed the key first; the new swap starts from its
    /// value.
    Changed(S),
    /// The store failed.
    Store(store::Error),
}

impl Swap for atomics::Cas {
    fn current(&self) -> Result<Option<Vec<u8>>, store::Error> {
        atomics::Cas::current(self)
    }

    fn swap(self, value: &[u8]) -> Result<(), Lost<Self>> {
        atomics::swap(self, value).map_err(|error| match error {
            atomics::CasError::CasFailed(next) => Lost::Changed(next),
            atomics::CasError::StoreError(error) => Lost::Store(error),
        })
    }
}

/// Why [`run`] gave up.
#[derive(Debug)]
pub(super) enum Failure<E> {
    /// The change itself failed.
    Change(E),
    /// The store failed.
    Store(store::Error),
    /// Every attempt lost to another writer.
    Contended,
}

/// Applies `change` to the value `swap` read, and writes the result if
/// nobody wrote in between; otherwise tries again from the newer value, up
/// to `attempts` times. The value the key holds afterwards: the one written,
/// or the current one if `change` chose not to write (`Ok(None)`).
pub(super) fn run<S: Swap, E>(
    mut swap: S,
    attempts: u32,
    mut change: impl FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
) -> Result<Option<Vec<u8>>, Failure<E>> {
    for _ in 0..attempts {
        let current = swap.current().map_err(Failure::Store)?;
        let Some(new) = change(current.as_deref()).map_err(Failure::Change)? else {
            return Ok(current);
        };
        match swap.swap(&new) {
            Ok(()) => return Ok(Some(new)),
            Err(Lost::Changed(next)) => swap = next,
            Err(Lost::Store(error)) => return Err(Failure::Store(error)),
        }
    }
    Err(Failure::Contended)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A key in memory, versioned, and a number of rival writes to land
    /// between a swap's read and its write.
    #[derive(Default)]
    struct Key {
        value: Option<Vec<u8>>,
        version: u32,
        rivals: u32,
        fail_swaps: bool,
    }

    struct FakeSwap {
        key: Rc<RefCell<Key>>,
        seen: (Option<Vec<u8>>, u32),
    }

    impl FakeSwap {
        fn begin(key: &Rc<RefCell<Key>>) -> FakeSwap {
            let state = key.borrow();
            FakeSwap {
                key: key.clone(),
                seen: (state.value.clone(), state.version),
            }
        }
    }

    impl Swap for FakeSwap {
        fn current(&self) -> Result<Option<Vec<u8>>, store::Error> {
            Ok(self.seen.0.clone())
        }

        fn swap(self, value: &[u8]) -> Result<(), Lost<Self>> {
            let mut key = self.key.borrow_mut();
            if key.fail_swaps {
                return Err(Lost::Store(store::Error::Other("disk full".into())));
            }
            if key.rivals > 0 {
                key.rivals -= 1;
                key.value.get_or_insert_default().push(b'!');
                key.version += 1;
            }
            if key.version != self.seen.1 {
                drop(key);
                return Err(Lost::Changed(FakeSwap::begin(&self.key)));
            }
            key.value = Some(value.to_vec());
            key.version += 1;
            Ok(())
        }
    }

    fn key(value: Option<&str>, rivals: u32) -> Rc<RefCell<Key>> {
        Rc::new(RefCell::new(Key {
            value: value.map(|v| v.as_bytes().to_vec()),
            rivals,
            ..Key::default()
        }))
    }

    fn append(suffix: &str) -> impl FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, ()> {
        move |old| Ok(Some([old.unwrap_or_default(), suffix.as_bytes()].concat()))
    }

    #[test]
    fn an_uncontended_change_is_written_at_once() {
        let key = key(Some("a"), 0);
        let mut calls = 0;
        let written = run(FakeSwap::begin(&key), 3, |old| {
            calls += 1;
            append("b")(old)
        });
        assert_eq!(written.unwrap(), Some(b"ab".to_vec()));
        assert_eq!(calls, 1);
        assert_eq!(key.borrow().value.as_deref(), Some(&b"ab"[..]));
    }

    #[test]
    fn a_lost_race_retries_from_the_rivals_value() {
        let key = key(None, 2);
        let written = run(FakeSwap::begin(&key), 3, append("x")).unwrap();
        // Two rivals appended `!` first; the third try kept both.
        assert_eq!(written, Some(b"!!x".to_vec()));
        assert_eq!(key.borrow().value, written);
    }

    #[test]
    fn losing_every_attempt_is_contention_not_a_lost_update() {
        let key = key(Some("v"), 3);
        let failure = run(FakeSwap::begin(&key), 3, append("x")).unwrap_err();
        assert!(matches!(failure, Failure::Contended), "{failure:?}");
        assert_eq!(key.borrow().value.as_deref(), Some(&b"v!!!"[..]));
    }

    #[test]
    fn declining_to_write_leaves_the_value_and_returns_it() {
        let key = key(Some("keep"), 0);
        let now = run(FakeSwap::begin(&key), 3, |_| Ok::<_, ()>(None)).unwrap();
        assert_eq!(now, Some(b"keep".to_vec()));
        assert_eq!(key.borrow().version, 0);
    }

    #[test]
    fn a_failed_change_or_store_stops_the_loop() {
        let key = key(None, 0);
        let failure = run(FakeSwap::begin(&key), 3, |_| Err("no such todo")).unwrap_err();
        assert!(
            matches!(failure, Failure::Change("no such todo")),
            "{failure:?}"
        );

        key.borrow_mut().fail_swaps = true;
        let failure = run(FakeSwap::begin(&key), 3, append("x")).unwrap_err();
        assert!(
            matches!(&failure, Failure::Store(store::Error::Other(message)) if message == "disk full"),
            "{failure:?}"
        );
    }
}
