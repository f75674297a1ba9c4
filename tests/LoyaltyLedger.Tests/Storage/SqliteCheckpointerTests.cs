using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// SQLite's write-ahead log is copied back into the database file beside the writer, never in its
/// commits, and it does not grow without end under writes that never stop (see <see cref="SqliteCheckpointer"/>).
/// </summary>
public sealed class SqliteCheckpointerTests : IAsyncDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loyaltyledger-tests", $"checkpoint-{Guid.NewGuid():N}");
    private readonly LedgerDatabase _database;

    public SqliteCheckpointerTests()
    {
        _database = LedgerDatabase.ForSqliteFile(Path.Combine(_dir, "ledger.db"));
    }

    private string File => Path.Combine(_dir, "ledger.db");

    private async Task CreateTableAsync()
    {
        // The migrations set WAL on a ledger's file; this file has only the one table.
        await _database.ReadAsync(c => c.ExecuteAsync("PRAGMA journal_mode=WAL"), CancellationToken.None);
        await _database.WriteAsync((c, tx) => c.ExecuteAsync("CREATE TABLE pages (id INTEGER PRIMARY KEY, body BLOB NOT NULL)", transaction: tx),
            CancellationToken.None);
    }

    /// <summary>Writes <paramref name="count"/> rows of 16 KB, four pages each, each write a transaction of the writer's.</summary>
    private Task WriteRowsAsync(int count, int from = 0) =>
        Task.WhenAll(Enumerable.Range(from, count).Select(i => _database.WriteAsync(
            (c, tx) => c.ExecuteAsync("INSERT INTO pages (id, body) VALUES (@i, randomblob(16384))", new { i }, tx), CancellationToken.None)));

    private static async Task WaitUntilAsync(Func<bool> done, string what)
    {
        for (var waited = 0; waited < 200 && !done(); waited++) await Task.Delay(50);
        done().ShouldBeTrue(what);
    }

    [Fact]
    public async Task the_writer_does_not_checkpoint_in_its_commits()
    {
        await CreateTableAsync();
        var automatic = await _database.WriteAsync((c, tx) => c.ExecuteScalarAsync<long>("PRAGMA wal_autocheckpoint", transaction: tx), CancellationToken.None);
        automatic.ShouldBe(0);
    }

    [Fact]
    public async Task what_the_writer_commits_is_copied_into_the_database_file_beside_it()
    {
        await CreateTableAsync();
        var before = new FileInfo(File).Length;

        // 1,600 pages: past the 1,000 at which a commit would checkpoint if the writer did.
        await WriteRowsAsync(400);

        var checkpointer = _database.Checkpointer!;
        await WaitUntilAsync(() => checkpointer.Checkpoints > 0 && checkpointer.PendingFrames == 0 && checkpointer.LoggedFrames >= 1_600,
            "a checkpoint copied the whole log");
        // The rows are in the database file itself, not only in the log.
        (new FileInfo(File).Length - before).ShouldBeGreaterThanOrEqualTo(400L * 16384);
        (await _database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM pages"), CancellationToken.None)).ShouldBe(400);
    }

    [Fact]
    public async Task under_writes_that_never_stop_the_log_starts_again()
    {
        await CreateTableAsync();
        var checkpointer = _database.Checkpointer!;
        checkpointer.RestartFrames = 1_000;

        // Rows written as fast as the writer takes them (each round queued before the last is done)
        // until the writer has caught up with a checkpoint, against a restart point of 1,000 pages.
        var written = 0;
        var writing = WriteRowsAsync(50, written);
        written += 50;
        for (var round = 0; round < 400 && checkpointer.CatchUps == 0; round++)
        {
            var next = WriteRowsAsync(50, written);
            written += 50;
            await writing;
            writing = next;
        }
        await writing;
        checkpointer.CatchUps.ShouldBeGreaterThan(0, "the writer caught up with a checkpoint");

        // The log started again: a checkpoint after one more write finds fewer pages in it than the
        // restart point it had passed (what was written after the catch-up is at most two rounds of
        // 50 rows, 4 pages each, and the one more).
        await WriteRowsAsync(1, written++);
        var checkpoints = checkpointer.Checkpoints;
        await WaitUntilAsync(() => checkpointer.Checkpoints > checkpoints, "a checkpoint after the last write");
        checkpointer.LoggedFrames.ShouldBeInRange(1, checkpointer.RestartFrames - 1);
        (await _database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM pages"), CancellationToken.None)).ShouldBe(written);
    }

    public async ValueTask DisposeAsync()
    {
        await _database.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { /* a pooled handle may linger; the temp dir is reclaimed later */ }
    }
}
