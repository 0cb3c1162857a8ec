//! Which restore points a copy sends: a pure decision over the two locations' point ids, so
//! that it can be tested without a store.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::point::{id_seq, run_order};

/// The points a copy is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// Every source point newer than the destination's newest (all of them into an empty
    /// destination). A point the destination forgot (its retention differs) is not sent
    /// again, since it is older than what the destination holds.
    #[default]
    Newer,
    /// Only the source's newest point.
    Latest,
    /// These points (source ids), whether newer than the destination's or not.
    Ids(Vec<String>),
}

/// What a copy will do with the selected points, each list in run order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chosen {
    /// Points to send.
    pub send: Vec<String>,
    /// Selected points the destination holds already.
    pub present: Vec<String>,
}

/// Chooses the points to send from `source` to `destination` (both in run order).
///
/// Refuses a selection that names a point the source lacks, and a destination whose history
/// is another one: a point there with the sequence number of a point to send but another id
/// (two locations backed up on their own cannot be merged into one history, since a point's
/// number orders it after all the points of its location).
pub fn choose(source: &[String], destination: &[String], which: &Selection) -> Result<Chosen> {
    let held: BTreeMap<&str, ()> = destination.iter().map(|id| (id.as_str(), ())).collect();
    let selected: Vec<&String> = match which {
        Selection::Newer => {
            let newest = destination.iter().map(|id| run_order(id)).max();
            (source.iter())
                .filter(|id| newest.is_none_or(|n| run_order(id) >= n))
                .collect()
        }
        Selection::Latest => source.last().into_iter().collect(),
        Selection::Ids(ids) => {
            if let Some(missing) = ids.iter().find(|id| !source.contains(id)) {
                return Err(EngineError::invalid_input(format!(
                    "--point {missing}: the source has no such restore point (see `esbackup list` of the source)"
                )));
            }
            source.iter().filter(|id| ids.contains(id)).collect()
        }
    };
    let (present, send): (Vec<&String>, Vec<&String>) = selected
        .into_iter()
        .partition(|id| held.contains_key(id.as_str()));
    refuse_other_history(&send, destination)?;
    Ok(Chosen {
        send: send.into_iter().cloned().collect(),
        present: present.into_iter().cloned().collect(),
    })
}

fn refuse_other_history(send: &[&String], destination: &[String]) -> Result<()> {
    let by_seq: BTreeMap<u64, &String> = destination
        .iter()
        .filter_map(|id| Some((id_seq(id)?, id)))
        .collect();
    for id in send {
        if let Some(other) = id_seq(id).and_then(|seq| by_seq.get(&seq)) {
            return Err(EngineError::wrong_location(format!(
                "the destination holds restore point {other}, numbered as the source's {id} but another point: it holds another history (copy into an empty location, or into one that only copies hold)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const P1: &str = "p00000001-20261201T000000000Z-aaaaaaaa";
    const P2: &str = "p00000002-20261202T000000000Z-bbbbbbbb";
    const P3: &str = "p00000003-20261203T000000000Z-cccccccc";
    const OTHER2: &str = "p00000002-20261202T000000000Z-dddddddd";

    #[test]
    fn an_empty_destination_gets_every_point() {
        let chosen = choose(&ids(&[P1, P2, P3]), &[], &Selection::Newer).unwrap();
        assert_eq!(chosen.send, ids(&[P1, P2, P3]));
        assert!(chosen.present.is_empty());
    }

    #[test]
    fn only_points_newer_than_the_destinations_newest_are_sent() {
        // P1 was forgotten at the destination (its own retention): it is not sent again.
        let chosen = choose(&ids(&[P1, P2, P3]), &ids(&[P2]), &Selection::Newer).unwrap();
        assert_eq!(chosen.send, ids(&[P3]));
        assert_eq!(chosen.present, ids(&[P2]));
        let again = choose(&ids(&[P1, P2, P3]), &ids(&[P2, P3]), &Selection::Newer).unwrap();
        assert!(again.send.is_empty());
        assert_eq!(again.present, ids(&[P3]));
    }

    #[test]
    fn named_points_are_sent_even_when_older() {
        let which = Selection::Ids(ids(&[P1, P3]));
        let chosen = choose(&ids(&[P1, P2, P3]), &ids(&[P3]), &which).unwrap();
        assert_eq!(chosen.send, ids(&[P1]));
        assert_eq!(chosen.present, ids(&[P3]));
        let latest = choose(&ids(&[P1, P2, P3]), &[], &Selection::Latest).unwrap();
        assert_eq!(latest.send, ids(&[P3]));
    }

    #[test]
    fn a_point_the_source_lacks_is_bad_usage() {
        let which = Selection::Ids(ids(&["p00000009-20261209T000000000Z-eeeeeeee"]));
        let e = choose(&ids(&[P1]), &[], &which).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("p00000009"), "{e}");
    }

    #[test]
    fn another_history_at_the_destination_is_refused() {
        let e = choose(
            &ids(&[P1, P2, P3]),
            &ids(&[P1, OTHER2]),
            &Selection::Ids(ids(&[P2])),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongLocation);
        assert!(e.to_string().contains(OTHER2), "{e}");
    }
}
