//! `ferry bench --json FILE`: the whole [`BenchReport`] as pretty JSON, so
//! scripts and later runs can compare figures without parsing the table.

use super::report::BenchReport;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Why a bench output (JSON or plots) could not be written; shared by
/// [`write_json`] and [`super::plot::write_plots`] so the CLI handles one type.
#[derive(Debug, thiserror::Error)]
pub enum BenchOutputError {
    /// Creating or writing a file or folder failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be serialised.
    #[error("cannot write the report as JSON to {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// The embedded plot font was refused by the font loader.
    #[error("the embedded plot font is not a valid TrueType font")]
    Font,
    /// A plot could not be drawn or encoded.
    #[error("cannot draw the plot {}", path.display())]
    Plot {
        /// The file.
        path: PathBuf,
        /// The error from the drawing backend.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Write any serialisable report (e.g. the `--scale` one) to `path` as
/// pretty-printed JSON.
pub fn write_json_of<T: serde::Serialize>(report: &T, path: &Path) -> Result<(), BenchOutputError> {
    let io = |source| BenchOutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let mut out = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, report).map_err(|source| BenchOutputError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    out.write_all(b"\n").map_err(io)?;
    out.flush().map_err(io)
}

/// Write `report` to `path` as pretty-printed JSON (creating or truncating
/// the file): the machine-readable twin of the table.
pub fn write_json(report: &BenchReport, path: &Path) -> Result<(), BenchOutputError> {
    write_json_of(report, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::table::tests::synthetic_report;

    #[test]
    fn json_round_trips_with_expected_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.json");
        let report = synthetic_report();
        write_json(&report, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "machine",
            "quick",
            "floor",
            "figures",
            "bandwidth",
            "callback",
            "headline",
        ] {
            assert!(v.get(key).is_some(), "missing key {key}");
        }
        assert_eq!(v["machine"]["tsc_khz"], 2_600_000);
        assert_eq!(v["floor"]["p50"], report.floor.p50);
        let figures = v["figures"].as_array().unwrap();
        assert_eq!(figures.len(), report.figures.len());
        let first = &figures[0];
        for key in [
            "group",
            "name",
            "mode",
            "param",
            "dir",
            "stats",
            "ratio_to_floor",
            "cdf",
        ] {
            assert!(first.get(key).is_some(), "figure lacks {key}");
        }
        assert_eq!(first["group"], "null");
        assert_eq!(first["mode"], "migrate");
        assert!(v["headline"].get("migrate_vs_floor").is_some());
        assert!(v["callback"]["save_restore_p50"].as_u64().unwrap() > 0);
    }

    #[test]
    fn unwritable_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/bench.json");
        let err = write_json(&synthetic_report(), &path).unwrap_err();
        assert!(matches!(err, BenchOutputError::Io { .. }), "{err}");
    }
}
