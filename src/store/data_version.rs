//! `PRAGMA data_version` on a SQLite connection of our own, opened through SQLite's C API rather
//! than sqlx: a sqlx connection runs each statement on its own thread, and the hop there and back
//! (two wake-ups of a parked thread) cost far more than the pragma, which reads a counter from
//! the WAL index in shared memory. Asked directly it takes a few microseconds, so it runs on the
//! caller's thread.
//!
//! The only `unsafe` code in Gatehouse, kept to this file: one connection, one prepared
//! statement, both freed on drop, used under `&mut self` (so never from two threads at once).

use std::ffi::{CStr, CString, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;

#[derive(Debug, thiserror::Error)]
#[error("SQLite data_version: {what} (code {code})")]
pub struct DataVersionError {
    what: &'static str,
    code: c_int,
}

/// An open connection with `PRAGMA data_version` prepared on it.
pub struct DataVersion {
    db: NonNull<ffi::sqlite3>,
    statement: NonNull<ffi::sqlite3_stmt>,
}

// SAFETY: SQLite is built thread-safe (libsqlite3-sys's bundled build sets SQLITE_THREADSAFE=1)
// and the connection is opened with SQLITE_OPEN_FULLMUTEX, so it may be used from any thread;
// `&mut self` on every use means one thread at a time.
unsafe impl Send for DataVersion {}

impl DataVersion {
    /// Opens `path` (an existing database; never created here). The connection sets no busy
    /// timeout: if the file is locked in a way a reader cannot pass (only during crash
    /// recovery), [`Self::current`] fails at once instead of waiting.
    pub fn open(path: &Path) -> Result<Self, DataVersionError> {
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| DataVersionError { what: "the path contains a NUL byte", code: ffi::SQLITE_MISUSE })?;
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_FULLMUTEX;
        let mut db = ptr::null_mut();
        // SAFETY: `path` is a valid C string; `db` receives a handle (possibly null on failure).
        let code = unsafe { ffi::sqlite3_open_v2(path.as_ptr(), &mut db, flags, ptr::null()) };
        let Some(db) = NonNull::new(db) else {
            return Err(DataVersionError { what: "cannot open the database", code });
        };
        if code != ffi::SQLITE_OK {
            // SAFETY: a handle returned alongside an error must still be closed, once.
            unsafe { ffi::sqlite3_close(db.as_ptr()) };
            return Err(DataVersionError { what: "cannot open the database", code });
        }
        const SQL: &CStr = c"PRAGMA data_version";
        let mut statement = ptr::null_mut();
        // SAFETY: `db` is open; SQL is NUL-terminated (-1: read up to the NUL).
        let code = unsafe { ffi::sqlite3_prepare_v2(db.as_ptr(), SQL.as_ptr(), -1, &mut statement, ptr::null_mut()) };
        match NonNull::new(statement) {
            Some(statement) if code == ffi::SQLITE_OK => Ok(DataVersion { db, statement }),
            _ => {
                // SAFETY: nothing was prepared (or it failed), so closing the handle is all.
                unsafe { ffi::sqlite3_close(db.as_ptr()) };
                Err(DataVersionError { what: "cannot prepare the pragma", code })
            }
        }
    }

    /// The current value: it differs from the last one read on this connection if and only if
    /// another connection (this process or any other) committed in between.
    pub fn current(&mut self) -> Result<i64, DataVersionError> {
        let statement = self.statement.as_ptr();
        // SAFETY: the statement is prepared on our open connection and used by one thread at a
        // time; column 0 is read only after a row was produced; reset readies the next use.
        unsafe {
            let code = ffi::sqlite3_step(statement);
            let value = match code {
                ffi::SQLITE_ROW => Ok(ffi::sqlite3_column_int64(statement, 0)),
                _ => Err(DataVersionError { what: "the pragma failed", code }),
            };
            ffi::sqlite3_reset(statement);
            value
        }
    }
}

impl Drop for DataVersion {
    fn drop(&mut self) {
        // SAFETY: both were created in `open` and are freed exactly once, statement first.
        unsafe {
            ffi::sqlite3_finalize(self.statement.as_ptr());
            ffi::sqlite3_close(self.db.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_database_is_an_error_not_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        let error = DataVersion::open(&path).err().unwrap();
        assert!(error.to_string().contains("cannot open"), "{error}");
        assert!(!path.exists());
    }
}
