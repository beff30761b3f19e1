//! Inserts of many rows, several rows per statement. A statement's fixed cost — its lookup in
//! the statement cache, its run, its reset — is a large part of a row's insert when the rows
//! arrive in batches (the read models' followers, `livechat replay`): sharing it among
//! [`ROWS_PER_STATEMENT`] rows made replaying a million messages into a fresh history file
//! ~30 % faster (bench/README.md, "Rows per statement").

use rusqlite::{Connection, Statement};
use uuid::Uuid;

/// Rows per multi-row statement. SQLite binds at most 32,766 parameters per statement, so a
/// table of up to 1,000 columns fits.
pub(super) const ROWS_PER_STATEMENT: usize = 32;

/// A table's insert, one row per statement and [`ROWS_PER_STATEMENT`] rows per statement, made
/// once (the texts are the statement cache's keys).
pub(super) struct MultiInsert {
    one: String,
    group: String,
    cols: usize,
}

impl MultiInsert {
    /// `head` is the statement up to `VALUES`, ending with its column list (`INSERT OR IGNORE
    /// INTO t(a, b)`); the values are numbered parameters, one per column and row.
    pub(super) fn new(head: &str) -> Self {
        let cols = head
            .rsplit_once('(')
            .map(|(_, list)| list.split(',').count())
            .expect("an insert's head ends with its column list");
        let values = |rows: usize| {
            let tuples: Vec<String> = (0..rows)
                .map(|r| {
                    let params: Vec<String> =
                        (1..=cols).map(|c| format!("?{}", r * cols + c)).collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            format!("{head} VALUES {}", tuples.join(", "))
        };
        MultiInsert {
            one: values(1),
            group: values(ROWS_PER_STATEMENT),
            cols,
        }
    }

    /// Inserts `rows` in their order: whole groups by the multi-row statement, the rest one by
    /// one. `bind(stmt, first, row)` binds one row's values to parameters `first..first + cols`.
    pub(super) fn run<T>(
        &self,
        c: &Connection,
        rows: &[T],
        bind: impl Fn(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        let mut groups = rows.chunks_exact(ROWS_PER_STATEMENT);
        for group in groups.by_ref() {
            self.run_one(&mut *c.prepare_cached(&self.group)?, group, &bind)?;
        }
        let rest = groups.remainder();
        if !rest.is_empty() {
            let mut stmt = c.prepare_cached(&self.one)?;
            for row in rest {
                self.run_one(&mut stmt, std::slice::from_ref(row), &bind)?;
            }
        }
        Ok(())
    }

    fn run_one<T>(
        &self,
        stmt: &mut Statement<'_>,
        rows: &[T],
        bind: &impl Fn(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        for (i, row) in rows.iter().enumerate() {
            bind(stmt, i * self.cols + 1, row)?;
        }
        stmt.raw_execute().map(|_| ())
    }
}

/// Binds an id as the text every file keeps ids in (hyphenated, lowercase), formatted on the
/// stack; `None` binds NULL.
pub(super) fn bind_uuid(
    stmt: &mut Statement<'_>,
    at: usize,
    id: Option<Uuid>,
) -> rusqlite::Result<()> {
    let mut text = Uuid::encode_buffer();
    stmt.raw_bind_parameter(at, id.map(|id| &*id.hyphenated().encode_lower(&mut text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory database with one table, and its insert.
    fn table(schema: &str, head: &str) -> (Connection, MultiInsert) {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(schema).unwrap();
        (c, MultiInsert::new(head))
    }

    #[test]
    fn inserts_every_row_once_in_order_across_groups_and_the_rest() {
        let (c, insert) = table(
            "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            "INSERT OR IGNORE INTO t(k, v)",
        );
        // Two whole groups and a rest, with a repeated key in each kind of statement.
        let mut rows: Vec<(i64, String)> = (0..2 * ROWS_PER_STATEMENT as i64 + 5)
            .map(|k| (k, format!("v{k}")))
            .collect();
        rows[3] = (2, "again".into());
        let last = rows.len() - 1;
        rows[last] = (0, "again".into());
        insert
            .run(&c, &rows, |s, at, (k, v)| {
                s.raw_bind_parameter(at, k)?;
                s.raw_bind_parameter(at + 1, v)
            })
            .unwrap();
        let got: Vec<(i64, String)> = c
            .prepare("SELECT k, v FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut want: Vec<(i64, String)> = rows[..last].to_vec();
        want.retain(|(k, v)| !(*k == 2 && v == "again"));
        want.sort();
        assert_eq!(got.len(), 2 * ROWS_PER_STATEMENT + 3);
        assert_eq!(
            got, want,
            "the first row of a key is kept, in any statement"
        );
    }

    #[test]
    fn ids_are_bound_as_their_text_or_null() {
        let (c, insert) = table(
            "CREATE TABLE t(a TEXT, b TEXT, c TEXT)",
            "INSERT INTO t(a, b, c)",
        );
        let id = Uuid::now_v7();
        insert
            .run(&c, &[(id, None::<Uuid>)], |s, at, (a, b)| {
                bind_uuid(s, at, Some(*a))?;
                bind_uuid(s, at + 1, *b)?;
                s.raw_bind_parameter(at + 2, "x")
            })
            .unwrap();
        let got: (String, Option<String>, String) = c
            .query_row("SELECT a, b, c FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(got, (id.to_string(), None, "x".to_string()));
    }
}
