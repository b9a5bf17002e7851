//! Apply waves inside one revision: which wave an object is in, and the revision split into
//! its waves in the order they are applied.

use std::collections::BTreeMap;

use crate::api::{APPLY_WAVE_ANNOTATION, ARGOCD_SYNC_WAVE_ANNOTATION};

/// A wave annotation that is not an integer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("annotation {annotation}: {value:?} is not an integer wave")]
pub struct InvalidWave {
    pub annotation: &'static str,
    pub value: String,
}

/// The wave of an object with `annotations`: [`APPLY_WAVE_ANNOTATION`], else (when
/// `argocd` is set) Argo CD's [`ARGOCD_SYNC_WAVE_ANNOTATION`], else 0.
pub fn wave_of(
    annotations: Option<&BTreeMap<String, String>>,
    argocd: bool,
) -> Result<i64, InvalidWave> {
    let read = |annotation: &'static str| {
        let value = annotations?.get(annotation)?;
        Some(value.trim().parse::<i64>().map_err(|_| InvalidWave {
            annotation,
            value: value.clone(),
        }))
    };
    let argocd_wave = || argocd.then(|| read(ARGOCD_SYNC_WAVE_ANNOTATION)).flatten();
    read(APPLY_WAVE_ANNOTATION)
        .or_else(argocd_wave)
        .unwrap_or(Ok(0))
}

/// `items` grouped by wave, lowest first, each wave in the items' own order.
pub fn split_waves<T>(items: Vec<T>, wave: impl Fn(&T) -> i64) -> Vec<(i64, Vec<T>)> {
    let mut waves: BTreeMap<i64, Vec<T>> = BTreeMap::new();
    for item in items {
        waves.entry(wave(&item)).or_default().push(item);
    }
    waves.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ordering::test_annotations as annotations;

    #[test]
    fn the_driftless_annotation_wins_then_argo_cd_s_then_zero() {
        let both = annotations(&[
            (APPLY_WAVE_ANNOTATION, "2"),
            (ARGOCD_SYNC_WAVE_ANNOTATION, "5"),
        ]);
        assert_eq!(wave_of(Some(&both), true), Ok(2));
        let argo = annotations(&[(ARGOCD_SYNC_WAVE_ANNOTATION, "-1")]);
        assert_eq!(wave_of(Some(&argo), true), Ok(-1));
        assert_eq!(
            wave_of(Some(&argo), false),
            Ok(0),
            "Argo CD compatibility off"
        );
        assert_eq!(wave_of(None, true), Ok(0));
        assert_eq!(wave_of(Some(&annotations(&[])), true), Ok(0));
    }

    #[test]
    fn a_wave_that_is_not_an_integer_is_refused_naming_the_annotation() {
        let bad = annotations(&[(APPLY_WAVE_ANNOTATION, "first")]);
        let error = wave_of(Some(&bad), true).unwrap_err();
        assert_eq!(
            error.to_string(),
            "annotation driftless.dev/apply-wave: \"first\" is not an integer wave"
        );
    }

    #[test]
    fn waves_are_applied_lowest_first_keeping_the_manifest_order_inside_each() {
        let items = vec![("a", 1), ("b", 0), ("c", 1), ("d", -3)];
        let waves = split_waves(items, |(_, wave)| *wave);
        let names: Vec<(i64, Vec<&str>)> = waves
            .into_iter()
            .map(|(wave, items)| (wave, items.into_iter().map(|(n, _)| n).collect()))
            .collect();
        assert_eq!(
            names,
            vec![(-3, vec!["d"]), (0, vec!["b"]), (1, vec!["a", "c"])]
        );
    }
}
