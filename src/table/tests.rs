use std::collections::hash_map::RandomState;
use std::sync::Arc;

use super::*;
use crate::cell::{Cell, RichCell};
use crate::word::Rules;

type Cells = Table<u32, Cell, RichCell, RandomState>;

fn insert(table: &Cells, key: u32) {
    let hash = table.hash_one(&key);
    let (_, inserted) = table
        .upsert(hash, key, || Some(Cell::vacant()), |_| ())
        .unwrap();
    assert!(inserted);
}

fn is_rich(table: &Cells, key: u32) -> Option<bool> {
    table.read(table.hash_one(&key), &key, |cell| {
        matches!(cell, Form::Rich(_))
    })
}

/// A key moves from the plain table to the rich one once, keeps one shared home however it
/// is reached afterwards, and is in exactly one table throughout.
#[test]
fn a_key_moves_to_the_rich_table_once_and_stays_there() {
    let table = Cells::with_hasher(RandomState::new(), Rules::new(Default::default()));
    for key in 0..100 {
        insert(&table, key);
    }
    assert_eq!(is_rich(&table, 7), Some(false));
    let hash = table.hash_one(&7);
    let handle = table
        .try_update_rich(hash, &7, |rich| rich.shared())
        .unwrap();
    assert_eq!(is_rich(&table, 7), Some(true));
    assert_eq!(table.len(), 100, "moved, not copied");
    let again = table
        .try_update_rich(hash, &7, |rich| rich.shared())
        .unwrap();
    let (by_upsert, inserted) = table
        .upsert_rich(hash, 7, || Some(Cell::vacant()), |rich| rich.shared())
        .unwrap();
    assert!(!inserted, "upsert_rich found the rich entry");
    assert!(Arc::ptr_eq(&handle, &again) && Arc::ptr_eq(&handle, &by_upsert));
    let (form, inserted) = table
        .upsert(
            hash,
            7,
            || Some(Cell::vacant()),
            |cell| matches!(cell, Form::Rich(_)),
        )
        .unwrap();
    assert!(
        form && !inserted,
        "upsert found it rich, did not insert a plain twin"
    );
    assert_eq!(table.len(), 100);

    // A new key upserted rich goes straight to the rich table.
    let hash = table.hash_one(&1000);
    table
        .upsert_rich(hash, 1000, || Some(Cell::vacant()), |_| ())
        .unwrap();
    assert_eq!(is_rich(&table, 1000), Some(true));

    // Removal and retain reach both tables, and count what they remove.
    assert!(table.remove_if(table.hash_one(&7), &7, |_| true));
    assert_eq!(is_rich(&table, 7), None);
    let (removed, _) = table.retain(Some(u64::MAX), |&key, _| key >= 50);
    assert_eq!(removed, 49, "keys 0..50 but 7");
    let (removed, _) = table.retain(Some(u64::MAX), |&key, _| key != 1000);
    assert_eq!(removed, 1, "the rich key 1000");
    assert_eq!(table.len(), 50);
}

/// Each shard's presence summary, as the OR of its keys' bits it should hold at least.
fn summaries(table: &Cells) -> Vec<(u64, u64)> {
    let mut expected = vec![0; SHARDS];
    table.for_each(|key, _| {
        let hash = table.hash_one(key);
        let index = (hash << 7) >> (64 - SHARD_BITS);
        expected[index as usize] |= presence_bit(hash);
    });
    let present = table.shards.iter();
    let present = present.map(|shard| shard.present.load(Ordering::Relaxed));
    present.zip(expected).collect()
}

/// The summary covers every key through inserts in both forms, removals and purges; a shard
/// emptied by either has an empty summary, and a purge rebuilds a small shard's summary
/// exactly.
#[test]
fn the_presence_summary_covers_every_key() {
    let table = Cells::with_hasher(RandomState::new(), Rules::new(Default::default()));
    for key in 0..2_000 {
        insert(&table, key);
    }
    for key in 2_000..2_100 {
        let hash = table.hash_one(&key);
        let vacant = || Some(Cell::vacant());
        table.upsert_rich(hash, key, vacant, |_| ()).unwrap();
    }
    for (present, expected) in summaries(&table) {
        assert_eq!(present & expected, expected, "a key's bit is missing");
    }
    for key in 0..2_100 {
        assert!(table.remove_if(table.hash_one(&key), &key, |_| true));
    }
    assert!(summaries(&table).iter().all(|&(present, _)| present == 0));

    for key in 0..300 {
        insert(&table, key);
    }
    for key in 0..250 {
        assert!(table.remove_if(table.hash_one(&key), &key, |_| true));
    }
    let (removed, _) = table.retain(Some(u64::MAX), |_, _| true);
    assert_eq!(removed, 0);
    assert!(
        summaries(&table)
            .iter()
            .all(|&(present, exact)| present == exact),
        "a purge rebuilds small shards' summaries from their survivors"
    );
    table.retain(Some(u64::MAX), |_, _| false);
    assert!(summaries(&table).iter().all(|&(present, _)| present == 0));
}

/// A lookup of a key whose bit is clear in its shard's summary completes while another
/// thread holds that shard's write guard: it took no guard. As a control, a lookup of a key
/// that is there waits for the guard.
#[test]
fn a_lookup_of_an_absent_key_takes_no_guard() {
    use std::sync::mpsc;
    use std::time::Duration;

    let table = Cells::with_hasher(RandomState::new(), Rules::new(Default::default()));
    insert(&table, 0);
    let hash = table.hash_one(&0);
    let shard = |hash: u64| (hash << 7) >> (64 - SHARD_BITS);
    let absent = (1..)
        .find(|key: &u32| {
            let other = table.hash_one(key);
            shard(other) == shard(hash) && presence_bit(other) != presence_bit(hash)
        })
        .unwrap();
    let table = &table;
    std::thread::scope(|scope| {
        let guard = table.hold_write_guard(&0u32);
        let (done, found) = mpsc::channel();
        scope.spawn(move || {
            done.send(table.read(table.hash_one(&absent), &absent, |_| ()))
                .unwrap()
        });
        // A wait here means the lookup took the guard: fail by timeout, not hang.
        assert_eq!(found.recv_timeout(Duration::from_secs(60)), Ok(None));

        let (done, found) = mpsc::channel();
        scope.spawn(move || done.send(table.read(hash, &0, |_| ())).unwrap());
        assert!(
            found.recv_timeout(Duration::from_millis(200)).is_err(),
            "a lookup of a key that is there completed under another thread's write guard"
        );
        drop(guard);
        assert_eq!(found.recv().unwrap(), Some(()));
    });
}
