using Microsoft.Data.Sqlite;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Backups of a SQLite ledger with SQLite's online backup API: the copy is one consistent snapshot
/// of the file even while a server writes to it (the API restarts a step that a writer interrupts),
/// so every write committed before the backup began is in it.
/// </summary>
public static class SqliteBackup
{
    /// <summary>Copies <paramref name="sourcePath"/> to a new file; returns its size in pages.</summary>
    public static async Task<long> BackupAsync(string sourcePath, string targetPath, CancellationToken ct)
    {
        if (File.Exists(targetPath)) throw new IOException($"{targetPath} exists; a backup never overwrites a file.");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(targetPath))!);
        await using var source = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = sourcePath, Mode = SqliteOpenMode.ReadOnly, Pooling = false, DefaultTimeout = 30 }.ToString());
        await using var target = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = targetPath, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false }.ToString());
        await source.OpenAsync(ct);
        await target.OpenAsync(ct);
        source.BackupDatabase(target);
        await using var pages = target.CreateCommand();
        pages.CommandText = "PRAGMA page_count";
        var count = (long)(await pages.ExecuteScalarAsync(ct))!;
        // The copy is a plain rollback-journal file: one file to move, whatever the source's mode.
        pages.CommandText = "PRAGMA journal_mode = DELETE";
        await pages.ExecuteNonQueryAsync(ct);
        return count;
    }

    /// <summary>Restores a backup into a path that holds no ledger, by the same API (so a torn copy cannot result).</summary>
    public static async Task RestoreAsync(string backupPath, string targetPath, CancellationToken ct)
    {
        if (File.Exists(targetPath)) throw new IOException($"{targetPath} exists; restore into an empty directory.");
        await BackupAsync(backupPath, targetPath, ct);
    }
}
