using System.Collections.Concurrent;
using System.Data.Common;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Dapper;
using LoyaltyLedger.Telemetry;
using Npgsql;

namespace LoyaltyLedger.Storage;

/// <summary>What <see cref="LedgerDatabase.UseReadReplicas"/> takes: PostgreSQL streaming replicas of the primary.</summary>
/// <param name="ConnectionStrings">One per replica (Npgsql connection strings).</param>
/// <param name="TokenWait">How long a read with a consistency token waits for a replica to replay it before the primary serves it.</param>
/// <param name="MaxLag">The most a replica may lag behind the primary to serve a read without a token.</param>
public sealed record ReadReplicaOptions(IReadOnlyList<string> ConnectionStrings, TimeSpan TokenWait, TimeSpan MaxLag);

/// <summary>
/// Routes the reads that may go to a replica (<see cref="ReadConsistency.Replica"/>) across the
/// configured replicas, round robin, and falls back to the primary when none will do.
/// </summary>
/// <remarks>
/// <para>A read with a token (a write's WAL position) is served by a replica only once that replica's
/// <c>pg_last_wal_replay_lsn()</c> is at or past the token: replay only moves forward, so a replica
/// last seen at or past it needs no question; otherwise the read asks one replica again and again, on
/// the connection it will read on, for at most <see cref="ReadReplicaOptions.TokenWait"/>, and then the
/// primary serves it.</para>
/// <para>A read without a token goes to a replica whose lag is known to be within
/// <see cref="ReadReplicaOptions.MaxLag"/>. Lag is measured in time, not from
/// <c>pg_last_xact_replay_timestamp()</c> (on an idle primary the last replayed commit is old while
/// the replica is fully caught up), but against the primary's own WAL position: a monitor samples
/// the primary's <c>pg_current_wal_lsn()</c> every few hundred milliseconds and then each replica's
/// replay position; a replica that has replayed what the primary had written at time t is fresh as
/// of t, and at any later moment its lag is at most the time since t. That bound only grows between
/// samples, so a replica whose replay stalls is skipped within MaxLag even before the next sample.</para>
/// <para>A replica that fails to connect or to answer is marked down for <see cref="DownFor"/>, so
/// reads do not each wait for its connect timeout; the monitor keeps probing it and brings it back
/// as soon as it answers. Any database error on a replica makes the read run again on the primary.</para>
/// </remarks>
internal sealed class ReadReplicas : IAsyncDisposable
{
    /// <summary>How long a replica that failed is left out (unless the monitor sees it answer sooner).</summary>
    public static readonly TimeSpan DownFor = TimeSpan.FromSeconds(5);

    /// <summary>Connect timeout of a replica connection whose connection string sets none: a replica is optional, the primary is there.</summary>
    public const int DefaultConnectTimeoutSeconds = 2;

    /// <summary>How far back the monitor keeps the primary's positions (a replica further behind is reported as at least this far).</summary>
    private static readonly TimeSpan History = TimeSpan.FromSeconds(120);

    private static readonly ConcurrentDictionary<ReadReplicas, byte> Live = new();

    private static readonly ObservableGauge<double> LagSeconds = LedgerTelemetry.Meter.CreateObservableGauge("ledger.replica.lag",
        () => Live.Keys.SelectMany(r => r._replicas).Select(r => new Measurement<double>(r.LagSeconds, new KeyValuePair<string, object?>("replica", r.Name))),
        "s", "How far each read replica is behind the primary, in time (an upper bound; see README, \"Read replicas and read-your-writes\").");

    private static readonly ObservableGauge<long> LagBytes = LedgerTelemetry.Meter.CreateObservableGauge("ledger.replica.lag.bytes",
        () => Live.Keys.SelectMany(r => r._replicas).Select(r => new Measurement<long>(r.LagBytes, new KeyValuePair<string, object?>("replica", r.Name))),
        "By", "How far each read replica is behind the primary, in bytes of WAL not yet replayed.");

    private static readonly ObservableGauge<int> Up = LedgerTelemetry.Meter.CreateObservableGauge("ledger.replica.up",
        () => Live.Keys.SelectMany(r => r._replicas).Select(r => new Measurement<int>(r.IsDown ? 0 : 1, new KeyValuePair<string, object?>("replica", r.Name))),
        "{replica}", "1 while a read replica answers, 0 while it is left out as down.");

    private readonly LedgerDatabase _primary;
    private readonly Replica[] _replicas;
    private readonly ReadReplicaOptions _options;
    private readonly TimeSpan _probeInterval;
    private readonly List<(long At, ulong Position)> _history = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _monitor;
    private int _next;

    public ReadReplicas(LedgerDatabase primary, ReadReplicaOptions options)
    {
        _primary = primary;
        _options = options;
        _replicas = options.ConnectionStrings.Select(c => new Replica(c)).ToArray();
        // Often enough that a replica within MaxLag is seen as such (its bound grows by the interval
        // between samples), rarely enough to cost nothing: a quarter of MaxLag, 20 ms to 1 s.
        _probeInterval = TimeSpan.FromTicks(Math.Clamp(options.MaxLag.Ticks / 4, TimeSpan.FromMilliseconds(20).Ticks, TimeSpan.FromSeconds(1).Ticks));
        _ = (LagSeconds, LagBytes, Up); // created with the first instance; they read every live one
        Live.TryAdd(this, 0);
        _monitor = Task.Run(MonitorAsync);
    }

    public IReadOnlyList<string> Names => _replicas.Select(r => r.Name).ToList();

    /// <summary>
    /// A connection for a read of <paramref name="consistency"/> and the replica that serves it, when one
    /// will do; else none (both null): the primary serves, and the caller opens its connection as it
    /// opens any (a read of the primary waits for its read slot first, holding no connection).
    /// </summary>
    public async Task<(DbConnection? Connection, Replica? Replica)> OpenAsync(ReadConsistency consistency, CancellationToken ct)
    {
        var start = (int)((uint)Interlocked.Increment(ref _next) % (uint)_replicas.Length);
        if (consistency.After is { } token)
        {
            // A replica already seen at or past the token has the write: no question to ask.
            for (var i = 0; i < _replicas.Length; i++)
            {
                var replica = _replicas[(start + i) % _replicas.Length];
                if (replica.IsDown || replica.Replayed < token.Value) continue;
                if (await TryOpenAsync(replica, ct) is { } connection) return Served(connection, replica, "caught_up");
            }
            // Otherwise wait, on one replica, for it to get there.
            var deadline = Stopwatch.GetTimestamp() + (long)(_options.TokenWait.TotalSeconds * Stopwatch.Frequency);
            for (var i = 0; i < _replicas.Length; i++)
            {
                var replica = _replicas[(start + i) % _replicas.Length];
                if (replica.IsDown) continue;
                var connection = await TryOpenAsync(replica, ct);
                if (connection is null) continue;
                if (await WaitForAsync(replica, connection, token, deadline, ct)) return Served(connection, replica, "caught_up");
                await connection.DisposeAsync();
                if (replica.IsDown) continue;
                return Primary("token_wait");
            }
            return Primary("down");
        }

        var now = Stopwatch.GetTimestamp();
        for (var i = 0; i < _replicas.Length; i++)
        {
            var replica = _replicas[(start + i) % _replicas.Length];
            if (replica.IsDown || replica.LagAt(now) > _options.MaxLag) continue;
            if (await TryOpenAsync(replica, ct) is { } connection) return Served(connection, replica, "fresh");
        }
        return Primary(_replicas.All(r => r.IsDown) ? "down" : "lag");
    }

    /// <summary>A read on <paramref name="replica"/> failed with a database error: it runs again on the primary.</summary>
    public void Failed(Replica replica, DbException error)
    {
        // Only a failure of the replica itself takes it out: the connection (class 08, an
        // NpgsqlException that is no server error), the server shutting down (57P01-57P03) or out of
        // connections (53300). A query the standby cancelled (a conflict with recovery), a timeout or
        // an error of the request's own making says nothing about the replica's health.
        if (IsReplicaFailure(error)) replica.MarkDown();
        Count("primary", "error");
    }

    private static bool IsReplicaFailure(DbException error) => error switch
    {
        PostgresException pg => pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState is "57P01" or "57P02" or "57P03" or "53300",
        NpgsqlException => true,
        _ => false,
    };

    private static (DbConnection?, Replica?) Served(DbConnection connection, Replica replica, string reason)
    {
        Count("replica", reason);
        ReplicaConnections.AddOrUpdate(connection, replica);
        return (connection, replica);
    }

    /// <summary>The connections a replica serves, while they are alive (so a cache is never filled from one).</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<DbConnection, Replica> ReplicaConnections = new();

    /// <summary>
    /// True when <paramref name="connection"/> was given to a read by a replica: what it reads may be
    /// behind the primary, so it may answer that read but must not be kept for others (the catalog
    /// cache, which postings read too).
    /// </summary>
    public static bool Serves(DbConnection connection) => ReplicaConnections.TryGetValue(connection, out _);

    private static (DbConnection?, Replica?) Primary(string reason)
    {
        Count("primary", reason);
        return (null, null);
    }

    private static void Count(string servedBy, string reason) =>
        LedgerTelemetry.RoutedReads.Add(1, new KeyValuePair<string, object?>("served_by", servedBy), new KeyValuePair<string, object?>("reason", reason));

    private static async Task<DbConnection?> TryOpenAsync(Replica replica, CancellationToken ct)
    {
        try
        {
            return await replica.Source.OpenConnectionAsync(ct);
        }
        catch (NpgsqlException ex) when (ex.InnerException is TimeoutException && !ct.IsCancellationRequested)
        {
            // Every pooled connection of the replica is in use (or it did not answer in time): the
            // primary serves this read, and the replica is not marked down for being busy; the
            // monitor's sample marks it down if it does not answer at all.
            return null;
        }
        catch (Exception ex) when (ex is DbException or TimeoutException && !ct.IsCancellationRequested)
        {
            replica.MarkDown();
            return null;
        }
    }

    /// <summary>Asks <paramref name="replica"/> where its replay is until it reaches <paramref name="token"/> or the deadline passes.</summary>
    private async Task<bool> WaitForAsync(Replica replica, DbConnection connection, WalPosition token, long deadline, CancellationToken ct)
    {
        var pause = TimeSpan.FromMilliseconds(1);
        while (true)
        {
            ulong replayed;
            try
            {
                replayed = await ReplayedAsync(connection, ct);
            }
            catch (DbException) when (!ct.IsCancellationRequested)
            {
                replica.MarkDown();
                return false;
            }
            Observe(replica, replayed);
            if (replayed >= token.Value) return true;
            var now = Stopwatch.GetTimestamp();
            if (now >= deadline) return false;
            var left = Stopwatch.GetElapsedTime(now, deadline);
            await Task.Delay(pause < left ? pause : left, ct);
            pause = TimeSpan.FromMilliseconds(Math.Min(pause.TotalMilliseconds * 2, 16));
        }
    }

    /// <summary>The replica's replay position; 0 when the server is not (or no longer) a standby.</summary>
    private static async Task<ulong> ReplayedAsync(DbConnection connection, CancellationToken ct)
    {
        var text = await connection.ExecuteScalarAsync<string?>(new CommandDefinition("SELECT pg_last_wal_replay_lsn()::text", cancellationToken: ct));
        return WalPosition.TryParse(text, out var position) ? position.Value : 0;
    }

    /// <summary>Notes a replay position read from <paramref name="replica"/>: how far it has replayed, and as of when it is fresh.</summary>
    private void Observe(Replica replica, ulong replayed)
    {
        replica.NoteReplayed(replayed);
        long? freshAsOf = null;
        long oldest;
        ulong latest;
        lock (_history)
        {
            if (_history.Count == 0) return;
            latest = _history[^1].Position;
            oldest = _history[0].At;
            // The latest sample the replica has replayed past (samples grow in both time and position).
            for (var i = _history.Count - 1; i >= 0; i--)
            {
                if (_history[i].Position > replayed) continue;
                freshAsOf = _history[i].At;
                break;
            }
        }
        // Behind every sample kept: its lag is unknown (not bounded), and at least the history's length.
        replica.NoteFresh(freshAsOf, latest > replayed ? (long)(latest - replayed) : 0, oldest);
    }

    private async Task MonitorAsync()
    {
        var ct = _stopping.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await SampleAsync(ct);
                await Task.Delay(_probeInterval, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is DbException or TimeoutException or InvalidOperationException)
            {
                // The primary did not answer: nothing to compare against until it does; replicas
                // keep the bound they had, which grows with time.
                try { await Task.Delay(_probeInterval, ct); }
                catch (OperationCanceledException) { return; }
            }
        }
    }

    /// <summary>One sample: the primary's position first, then each replica's replay (so a replica at or past it is fresh as of that moment).</summary>
    private async Task SampleAsync(CancellationToken ct)
    {
        ulong primary;
        long at;
        await using (var connection = await _primary.OpenAsync(ct))
        {
            // Taken before the question: a replica that has replayed the answer holds what the
            // primary had at some moment after this one, so the lag is never understated.
            at = Stopwatch.GetTimestamp();
            var text = await connection.ExecuteScalarAsync<string?>(new CommandDefinition("SELECT pg_current_wal_lsn()::text", cancellationToken: ct));
            primary = WalPosition.TryParse(text, out var position) ? position.Value : 0;
        }
        lock (_history)
        {
            _history.Add((at, primary));
            var horizon = at - (long)(History.TotalSeconds * Stopwatch.Frequency);
            var old = _history.FindIndex(s => s.At >= horizon);
            if (old > 0) _history.RemoveRange(0, old);
        }
        await Task.WhenAll(_replicas.Select(async replica =>
        {
            try
            {
                await using var connection = await replica.Source.OpenConnectionAsync(ct);
                var replayed = await ReplayedAsync(connection, ct);
                if (replayed == 0)
                {
                    // Answers, but is no standby (promoted, or misconfigured): it cannot be trusted to follow the primary.
                    replica.MarkDown();
                    return;
                }
                replica.MarkUp();
                Observe(replica, replayed);
            }
            catch (Exception ex) when (ex is DbException or TimeoutException && !ct.IsCancellationRequested)
            {
                replica.MarkDown();
            }
        }));
    }

    public async ValueTask DisposeAsync()
    {
        Live.TryRemove(this, out _);
        await _stopping.CancelAsync();
        try { await _monitor; }
        catch (OperationCanceledException) { }
        foreach (var replica in _replicas) await replica.Source.DisposeAsync();
        _stopping.Dispose();
    }

    /// <summary>One replica: its connections and what is known of it.</summary>
    internal sealed class Replica
    {
        private long _replayed;
        private long _freshAsOf;
        private long _lagBytes;
        private long _downUntil;
        private long _behindSince = Stopwatch.GetTimestamp();

        public Replica(string connectionString)
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionString);
            // The connect timeout unless the connection string sets it (not Command Timeout and the like).
            if (!new NpgsqlConnectionStringBuilder(connectionString).ContainsKey("Timeout")) builder.Timeout = DefaultConnectTimeoutSeconds;
            Name = $"{builder.Host}:{builder.Port}";
            Source = LedgerDatabase.PostgresDataSource(builder.ConnectionString);
        }

        public string Name { get; }

        public NpgsqlDataSource Source { get; }

        /// <summary>The highest replay position seen (replay only moves forward).</summary>
        public ulong Replayed => (ulong)Interlocked.Read(ref _replayed);

        public bool IsDown => Stopwatch.GetTimestamp() < Interlocked.Read(ref _downUntil);

        public long LagBytes => Interlocked.Read(ref _lagBytes);

        /// <summary>An upper bound of the replica's lag at <paramref name="now"/>; unbounded while it is behind every sample kept.</summary>
        public TimeSpan LagAt(long now)
        {
            var fresh = Interlocked.Read(ref _freshAsOf);
            return fresh == 0 ? TimeSpan.MaxValue : Stopwatch.GetElapsedTime(fresh, now);
        }

        /// <summary>For the metric: the bound, or while there is none, how long it has been behind at least.</summary>
        public double LagSeconds
        {
            get
            {
                var now = Stopwatch.GetTimestamp();
                var fresh = Interlocked.Read(ref _freshAsOf);
                return Stopwatch.GetElapsedTime(fresh != 0 ? fresh : Interlocked.Read(ref _behindSince), now).TotalSeconds;
            }
        }

        public void NoteReplayed(ulong position)
        {
            var seen = Interlocked.Read(ref _replayed);
            while ((ulong)seen < position)
            {
                var was = Interlocked.CompareExchange(ref _replayed, (long)position, seen);
                if (was == seen) break;
                seen = was;
            }
        }

        /// <summary>
        /// Fresh as of the timestamp <paramref name="freshAsOf"/> (kept if later than what was known:
        /// freshness never goes back), or, when null, behind everything since <paramref name="oldestSample"/>.
        /// </summary>
        public void NoteFresh(long? freshAsOf, long lagBytes, long oldestSample)
        {
            Interlocked.Exchange(ref _lagBytes, lagBytes);
            if (freshAsOf is not { } fresh)
            {
                if (Interlocked.Read(ref _freshAsOf) == 0) Interlocked.Exchange(ref _behindSince, oldestSample);
                return;
            }
            var seen = Interlocked.Read(ref _freshAsOf);
            while (seen < fresh)
            {
                var was = Interlocked.CompareExchange(ref _freshAsOf, fresh, seen);
                if (was == seen) break;
                seen = was;
            }
        }

        /// <summary>Leaves the replica out for <see cref="DownFor"/>, and drops its idle connections (they may be broken: a restarted server's are).</summary>
        public void MarkDown()
        {
            var wasUp = !IsDown;
            Interlocked.Exchange(ref _downUntil, Stopwatch.GetTimestamp() + (long)(DownFor.TotalSeconds * Stopwatch.Frequency));
            if (wasUp) Source.Clear();
        }

        public void MarkUp() => Interlocked.Exchange(ref _downUntil, 0);
    }
}
