using System.Collections.Concurrent;
using System.Data.Common;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading.Channels;
using LoyaltyLedger.Telemetry;
using Microsoft.Data.Sqlite;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Copies the SQLite write-ahead log back into the database file beside the writer, instead of in
/// its commits.
/// </summary>
/// <remarks>
/// <para>Left to itself, SQLite checkpoints in the commit that takes the log past 1,000 pages, on the
/// committing connection: the copy of those pages into the database file and its fsync are part of
/// that commit. A group-commit batch of postings touches a few hundred pages (each changed index
/// page is logged whole), so under load every third or fourth batch carried a checkpoint, and every
/// write waiting behind it (all of them: SQLite has one writer) waited too. That was the embedded
/// database's write p99 of 140-420 ms at 32 clients, against 48-71 ms with checkpoints beside the
/// writer (bench/wrk/writes.lua, 32 clients, fresh copies of the 20,000-customer seed, docs/performance.md).</para>
/// <para>So the writer's connections do not checkpoint (<c>wal_autocheckpoint=0</c>), and this runs
/// a <c>PASSIVE</c> checkpoint on a connection of its own after the writer commits, at most once per
/// <see cref="Interval"/>. A passive checkpoint takes no lock a writer or reader waits for: it copies
/// what no reader still needs from the log. Readers never checkpoint (only a commit does). A CLI
/// command on the same file opens it the same way and checkpoints beside its own writer; two
/// checkpoints of one file take turns, and one that finds the other running is counted as busy and
/// asked again after the next commit. Other programs on the file keep SQLite's own checkpoints.</para>
/// <para>The writer starts the log again from its beginning only when all of it has been copied, and
/// a writer that never stops appends while each checkpoint runs: left at that, the log grew by
/// 2.7 GB in 40 s of the benchmark's writes. So once the log is past <see cref="RestartFrames"/>, the
/// writer, between two transactions, copies what was appended during the last checkpoint
/// (<see cref="CatchUpAsync"/>, a fraction of a second of commits), and its next commit starts the
/// log again when no reader is still on its old pages (or a later catch-up tries again).</para>
/// </remarks>
internal sealed class SqliteCheckpointer : IAsyncDisposable
{
    /// <summary>
    /// The log's file is cut back to this size when the writer starts it again: a burst grows it to
    /// whatever the checkpoints let it reach, and without a limit the file would keep that size.
    /// </summary>
    public const long LogSizeLimit = 64L * 1024 * 1024;

    /// <summary>
    /// Pages of log past which the writer catches up (<see cref="CatchUpAsync"/>) so that the log can
    /// start again: 128 MB of 4 KB pages, about two seconds of the benchmark's writes, so the writer
    /// pauses for that rarely.
    /// </summary>
    public const long DefaultRestartFrames = 32_768;

    /// <summary>Pages of log past which the writer catches up (<see cref="DefaultRestartFrames"/>; tests set fewer).</summary>
    public long RestartFrames { get; set; } = DefaultRestartFrames;

    /// <summary>
    /// The least time between two checkpoints: each one copies the pages changed since the one before
    /// and fsyncs the database file once, so a shorter interval copies a page changed again and again
    /// more often (every 50 ms wrote three times as many operations to the disk, for a worse p99), and
    /// a longer one lets the log grow further. Under the benchmark's write load a quarter of a second
    /// of commits is some 15 MB of log, which one checkpoint copies in 10-50 ms, beside the writer.
    /// </summary>
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);

    private static readonly ConcurrentDictionary<SqliteCheckpointer, byte> Live = new();

    /// <summary>
    /// The pages in the log at each checkpoint, summed over the files this process writes (a server
    /// writes one). Under load it climbs to the restart mark and falls back; one that keeps climbing
    /// is a log that cannot start over (a reader holding an old snapshot, failing checkpoints).
    /// </summary>
    private static readonly ObservableGauge<long> LogPages = LedgerTelemetry.Meter.CreateObservableGauge("ledger.sqlite.log.pages",
        () => Live.Keys.Sum(c => Math.Max(0, c.LoggedFrames)), "{page}",
        "Pages in the SQLite write-ahead log at its last checkpoint; one that keeps climbing past 32,768 is a log that cannot start over.");

    private readonly string _connectionString;
    private readonly Channel<bool> _commits = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _checkpoints;
    private long _catchUps;
    private long _loggedFrames;
    private long _pendingFrames;
    private int _catchUpDue;

    /// <param name="connectionString">The database file's; the checkpointer keeps one connection of its own open.</param>
    public SqliteCheckpointer(string connectionString)
    {
        // A connection of its own, never pooled: it carries the log's size limit, and a reader must
        // not be handed it.
        _connectionString = new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ToString();
        _loop = Task.Run(RunAsync);
        Live.TryAdd(this, 0);
    }

    /// <summary>Checkpoints run so far that were not kept out by another one running.</summary>
    public long Checkpoints => Interlocked.Read(ref _checkpoints);

    /// <summary>Times the writer caught up with a checkpoint so that the log could start again.</summary>
    public long CatchUps => Interlocked.Read(ref _catchUps);

    /// <summary>Pages the log held at the last checkpoint: after the log starts again, only what was written since.</summary>
    public long LoggedFrames => Interlocked.Read(ref _loggedFrames);

    /// <summary>Pages in the log that the last checkpoint could not copy yet (readers still needed them).</summary>
    public long PendingFrames => Interlocked.Read(ref _pendingFrames);

    /// <summary>The writer committed: a checkpoint is due once the interval since the last one has passed.</summary>
    public void Committed() => _commits.Writer.TryWrite(true);

    private async Task RunAsync()
    {
        SqliteConnection? connection = null;
        try
        {
            while (await _commits.Reader.WaitToReadAsync(_stop.Token))
            {
                _commits.Reader.TryRead(out _);
                try
                {
                    connection ??= await OpenAsync(_stop.Token);
                    var logged = await CheckpointAsync(connection, _stop.Token);
                    if (logged > RestartFrames)
                    {
                        // Copy what the writer appended meanwhile, and again, each time less, so that
                        // what the writer itself has left to copy is a batch or two.
                        for (var i = 0; i < CatchUpRounds; i++) await CheckpointAsync(connection, _stop.Token);
                        Volatile.Write(ref _catchUpDue, 1);
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !_stop.IsCancellationRequested)
                {
                    // A checkpoint that failed (the disk, the file) leaves the log longer, nothing
                    // else: every page in it is already durable. The loop goes on whatever the
                    // error, since nothing else copies the writer's log back: the next commit asks
                    // again, on a new connection. Operators see it counted as failed
                    // (docs/operations.md).
                    LedgerTelemetry.SqliteCheckpoints.Add(1, new KeyValuePair<string, object?>("outcome", "failed"));
                    if (connection is not null) await connection.DisposeAsync();
                    connection = null;
                }
                await Task.Delay(Interval, _stop.Token);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        finally
        {
            if (connection is not null) await connection.DisposeAsync();
        }
    }

    private async Task<SqliteConnection> OpenAsync(CancellationToken ct)
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            await connection.OpenAsync(ct);
            using var pragma = connection.CreateCommand();
            // The same durability as the writer's commits: the log is synced before its pages are
            // copied, and the database file after.
            pragma.CommandText = $"PRAGMA synchronous=FULL; PRAGMA journal_size_limit={LogSizeLimit};";
            await pragma.ExecuteNonQueryAsync(ct);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>Checkpoints run back to back before the writer catches up (see <see cref="CatchUpAsync"/>).</summary>
    private const int CatchUpRounds = 2;

    /// <summary>
    /// Runs a passive checkpoint on <paramref name="connection"/>: whether another checkpoint of the
    /// file kept it out (SQLite answers that in the row, not as an error), the pages in the log, and
    /// how many of them are in the database file now (both -1 when kept out).
    /// </summary>
    private static async Task<(bool Busy, long Logged, long Copied)> PassiveCheckpointAsync(DbConnection connection, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA wal_checkpoint(PASSIVE)";
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return (true, -1, -1);
        return (reader.GetInt64(0) != 0, reader.GetInt64(1), reader.GetInt64(2));
    }

    /// <summary>Runs the checkpointer's passive checkpoint; answers the pages the log held (-1 when another checkpoint kept it out).</summary>
    private async Task<long> CheckpointAsync(SqliteConnection connection, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var (busy, logged, copied) = await PassiveCheckpointAsync(connection, ct);
        if (busy)
        {
            LedgerTelemetry.SqliteCheckpoints.Add(1, new KeyValuePair<string, object?>("outcome", "busy"));
            return -1;
        }
        Interlocked.Exchange(ref _loggedFrames, logged);
        Interlocked.Exchange(ref _pendingFrames, Math.Max(0, logged - copied));
        Interlocked.Increment(ref _checkpoints);
        LedgerTelemetry.SqliteCheckpoints.Add(1, new KeyValuePair<string, object?>("outcome", "done"));
        LedgerTelemetry.SqliteCheckpointDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, new KeyValuePair<string, object?>("by", "checkpointer"));
        return logged;
    }

    /// <summary>
    /// Run by the writer on its connection between two transactions: when the last checkpoint found
    /// the log past <see cref="RestartFrames"/>, copies the rest of it, so that the writer's next
    /// commit can start the log again. Only what was appended while that checkpoint ran is left to
    /// copy, so the writer pauses for a fraction of the interval. A failure here is the checkpoint's,
    /// not the write's: it is counted, and the write goes on.
    /// </summary>
    public async Task CatchUpAsync(DbConnection writer)
    {
        if (Interlocked.Exchange(ref _catchUpDue, 0) == 0) return;
        var started = Stopwatch.GetTimestamp();
        try
        {
            var (busy, logged, copied) = await PassiveCheckpointAsync(writer, CancellationToken.None);
            if (busy || copied < logged)
            {
                // Kept out by another checkpoint, or a reader still needs some of the log: the log
                // cannot start over yet. The checkpointer's next checkpoint past the mark asks again.
                LedgerTelemetry.SqliteCheckpoints.Add(1, new KeyValuePair<string, object?>("outcome", "busy"));
                return;
            }
            Interlocked.Increment(ref _catchUps);
            LedgerTelemetry.SqliteCheckpoints.Add(1, new KeyValuePair<string, object?>("outcome", "caught_up"));
            LedgerTelemetry.SqliteCheckpointDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, new KeyValuePair<string, object?>("by", "writer"));
        }
        catch (Exception)
        {
            // The checkpoint's failure, not the writes': they go on (a broken connection fails
            // their transaction's BEGIN, where the lane handles it). The checkpointer's next
            // checkpoint past the mark asks again.
            LedgerTelemetry.SqliteCheckpoints.Add(1, new KeyValuePair<string, object?>("outcome", "failed"));
        }
    }

    public async ValueTask DisposeAsync()
    {
        Live.TryRemove(this, out _);
        _commits.Writer.TryComplete();
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (Exception)
        {
            // The loop handles its own errors; whatever still escaped it must not stop the
            // database's disposal (its pools are cleared after this).
        }
        _stop.Dispose();
    }
}
