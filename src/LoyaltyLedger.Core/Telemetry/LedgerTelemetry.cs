using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace LoyaltyLedger.Telemetry;

/// <summary>
/// The ledger's own instruments, on the BCL's <see cref="Meter"/> and <see cref="ActivitySource"/>
/// so the kernel depends on no exporter: the host decides where they go (Prometheus at /metrics,
/// OTLP when configured). Names follow OpenTelemetry's conventions (dotted, units in the unit field).
/// </summary>
public static class LedgerTelemetry
{
    public const string Name = "LoyaltyLedger";

    public static readonly Meter Meter = new(Name);
    public static readonly ActivitySource Source = new(Name);

    /// <summary>Postings by kind (the endpoint's operation id) and outcome (committed, refused, replayed, failed).</summary>
    public static readonly Counter<long> Postings = Meter.CreateCounter<long>("ledger.postings", "{posting}", "Postings by kind and outcome.");

    public static readonly Histogram<double> PostingDuration = Meter.CreateHistogram<double>("ledger.posting.duration", "s",
        "Time from the start of a posting's transaction to its answer.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5] });

    /// <summary>Requests answered from the idempotency store: retries that wrote nothing.</summary>
    public static readonly Counter<long> IdempotentReplays = Meter.CreateCounter<long>("ledger.idempotent_replays", "{request}",
        "Writes answered from the idempotency store (a retry with the same Idempotency-Key).");

    /// <summary>
    /// Reads that read replicas could serve, by who served them (served_by: replica or primary) and why
    /// (reason: caught_up, fresh; or token_wait, lag, down, error). Reads that must see the primary
    /// (every read inside a write) and reads on a server without replicas are not counted.
    /// </summary>
    public static readonly Counter<long> RoutedReads = Meter.CreateCounter<long>("ledger.routed_reads", "{read}",
        "Reads a read replica could serve, by who served them (replica or primary) and why.");

    public static readonly Counter<long> RateLimitRefusals = Meter.CreateCounter<long>("ledger.rate_limit.refusals", "{request}",
        "Requests refused with 429 because their key was over its rate limit.");

    public static readonly Counter<long> KeyCacheLookups = Meter.CreateCounter<long>("ledger.key_cache.lookups", "{lookup}",
        "API key lookups by whether the process's key cache held the key (hit=true) or the database was asked.");

    public static readonly Counter<long> ExpiredWallets = Meter.CreateCounter<long>("ledger.expiry.wallets", "{wallet}",
        "Wallets whose due points an expiry run expired.");

    public static readonly Counter<long> ConvertedLots = Meter.CreateCounter<long>("ledger.expiry.conversions", "{lot}",
        "Promised lots an expiry run converted to main points.");

    /// <summary>Points expired, in thousandths (exact integers, as the ledger holds them; all currencies and programs).</summary>
    public static readonly Counter<long> ExpiredThousandths = Meter.CreateCounter<long>("ledger.expiry.points.thousandths", "{thousandth}",
        "Points expired by expiry runs, in thousandths of a point (all currencies and programs).");

    public static readonly Histogram<double> ExpiryRunDuration = Meter.CreateHistogram<double>("ledger.expiry.duration", "s",
        "How long an expiry run took.");

    /// <summary>Webhook delivery attempts by outcome: delivered, retry (will be tried again), failed (gave up).</summary>
    public static readonly Counter<long> TierChangeCount = Meter.CreateCounter<long>("ledger.tier.changes", "{change}",
        "Tier changes made by evaluations, by cause (RENEWAL, DOWNGRADE, UPGRADE).");

    /// <summary>Counts an evaluation's tier decisions by cause.</summary>
    public static void TierChanges(int renewed, int downgraded, int upgraded)
    {
        TierChangeCount.Add(renewed, new KeyValuePair<string, object?>("cause", "RENEWAL"));
        TierChangeCount.Add(downgraded, new KeyValuePair<string, object?>("cause", "DOWNGRADE"));
        TierChangeCount.Add(upgraded, new KeyValuePair<string, object?>("cause", "UPGRADE"));
    }

    public static readonly Counter<long> WebhookAttempts = Meter.CreateCounter<long>("ledger.webhook.attempts", "{attempt}",
        "Webhook delivery attempts by outcome.");

    public static readonly Histogram<double> WebhookAttemptDuration = Meter.CreateHistogram<double>("ledger.webhook.attempt.duration", "s",
        "How long a receiver took to answer a delivery attempt.");

    /// <summary>
    /// Time the SQLite writer spent in its transactions (its statements, savepoints and commit, and a
    /// wait for the file's lock while another process, such as a CLI command, writes). Its rate is
    /// the writer's utilization: every write of a SQLite server goes through that one writer, so a
    /// rate near 1 means the writes are at the embedded database's limit.
    /// </summary>
    public static readonly Counter<double> SqliteWriterBusy = Meter.CreateCounter<double>("ledger.sqlite.writer.busy", "s",
        "Time the SQLite writer spent in its transactions; its rate is the writer's utilization (1 = saturated).");

    /// <summary>
    /// Units of work (postings, sequencer runs...) one SQLite writer transaction took: those refused
    /// in it count too, and a batch whose commit failed counts again for each unit retried alone.
    /// </summary>
    public static readonly Histogram<int> SqliteWriterBatch = Meter.CreateHistogram<int>("ledger.sqlite.writer.batch", "{unit}",
        "Units of work one SQLite writer transaction took (group commit), refused ones included.",
        advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64] });

    /// <summary>
    /// SQLite writer transactions without savepoints rolled back because a unit in them was refused
    /// or failed, whose units then ran again in a transaction with a savepoint for each (see <c>GroupCommit</c>).
    /// </summary>
    public static readonly Counter<long> SqliteWriterReruns = Meter.CreateCounter<long>("ledger.sqlite.writer.reruns", "{transaction}",
        "SQLite writer transactions rolled back for a refused unit and run again with savepoints.");

    /// <summary>
    /// Checkpoints of the SQLite write-ahead log run beside the writer (<c>SqliteCheckpointer</c>), by
    /// outcome: done; caught_up (the writer copied the rest so that the log can start over); busy
    /// (another checkpoint of the file was running, or a reader still needed the log: asked again);
    /// failed. A failed one leaves the log longer and nothing else; one failing again and again lets
    /// the log file grow.
    /// </summary>
    public static readonly Counter<long> SqliteCheckpoints = Meter.CreateCounter<long>("ledger.sqlite.checkpoints", "{checkpoint}",
        "Checkpoints of the SQLite write-ahead log run beside the writer, by outcome.");

    /// <summary>How long each SQLite checkpoint took: copying the pages changed since the last one into the database file, and its fsync.</summary>
    public static readonly Histogram<double> SqliteCheckpointDuration = Meter.CreateHistogram<double>("ledger.sqlite.checkpoint.duration", "s",
        "Time each SQLite checkpoint took (copying logged pages into the database file, and its fsync), by who ran it.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] });

    /// <summary>
    /// Time PostgreSQL's group-commit lanes spent in their transactions, summed over the lanes: its
    /// rate divided by the number of lanes is their utilization.
    /// </summary>
    public static readonly Counter<double> PostgresWriterBusy = Meter.CreateCounter<double>("ledger.postgres.writer.busy", "s",
        "Time PostgreSQL's group-commit lanes spent in their transactions, summed over the lanes.");

    /// <summary>Units of work (the API's writes, the lifecycle run's postings) one PostgreSQL group-commit transaction took, refused ones included.</summary>
    public static readonly Histogram<int> PostgresWriterBatch = Meter.CreateHistogram<int>("ledger.postgres.writer.batch", "{unit}",
        "Units of work one PostgreSQL group-commit transaction took, refused ones included.",
        advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64] });

    /// <summary>
    /// PostgreSQL group-commit transactions without savepoints rolled back because a unit in them was
    /// refused, failed or deferred (it would have waited for a lock), whose other units then ran again
    /// in a transaction with a savepoint for each.
    /// </summary>
    public static readonly Counter<long> PostgresWriterReruns = Meter.CreateCounter<long>("ledger.postgres.writer.reruns", "{transaction}",
        "PostgreSQL group-commit transactions rolled back for a refused unit and run again with savepoints.");

    /// <summary>
    /// Units of a PostgreSQL group-commit transaction that would have waited for a lock (held by
    /// another lane, another server, any other transaction) behind the units before them, and went
    /// first in a later transaction of their lane instead: how often lanes meet on the same rows.
    /// </summary>
    public static readonly Counter<long> PostgresWriterDeferred = Meter.CreateCounter<long>("ledger.postgres.writer.deferred", "{unit}",
        "PostgreSQL group-commit units that would have waited for a lock behind others, run first in a later transaction instead.");

    /// <summary>
    /// PostgreSQL group-commit transactions whose writes were first run side by side, their statements
    /// sent together round by round (<c>outcome</c>: <c>ran</c>, every write to its end, and the
    /// transaction went on to its commit; or <c>broken</c>, when two of
    /// them touched the same rows, one failed or would have waited for a lock, and the transaction was
    /// rolled back and its writes run one after another).
    /// </summary>
    public static readonly Counter<long> PostgresWriterSideBySide = Meter.CreateCounter<long>("ledger.postgres.writer.side_by_side", "{transaction}",
        "PostgreSQL group-commit transactions whose writes ran side by side, by outcome (ran, or broken and run again one after another).");

    /// <summary>Round trips of PostgreSQL group-commit transactions run side by side, each carrying every waiting write's statements.</summary>
    public static readonly Counter<long> PostgresWriterRounds = Meter.CreateCounter<long>("ledger.postgres.writer.rounds", "{round trip}",
        "Round trips of PostgreSQL group-commit transactions whose writes ran side by side.");

    /// <summary>
    /// Time reads waited for one of PostgreSQL's read slots (<c>Ledger:Postgres:ReadSlots</c>), summed
    /// over the reads: its rate is how many reads were waiting, on average.
    /// </summary>
    public static readonly Counter<double> PostgresReadWait = Meter.CreateCounter<double>("ledger.postgres.read.wait", "s",
        "Time reads waited for a read slot on PostgreSQL's primary, summed over the reads.");

    /// <summary>
    /// Reads one round trip of PostgreSQL's read pipeline (<c>Ledger:Postgres:ReadPipelineLanes</c>)
    /// sent together: how much of the pipeline's saving the load gives.
    /// </summary>
    public static readonly Histogram<int> PostgresReadPipelineBatch = Meter.CreateHistogram<int>("ledger.postgres.read_pipeline.batch", "{read}",
        "Page reads one round trip of PostgreSQL's read pipeline sent together.",
        advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64] });

    private static long _webhookQueue;

    /// <summary>Set by the dispatcher from time to time: deliveries waiting (to be sent or retried).</summary>
    public static void SetWebhookQueue(long pending) => Interlocked.Exchange(ref _webhookQueue, pending);

    public static readonly ObservableGauge<long> WebhookQueue = Meter.CreateObservableGauge("ledger.webhook.queue",
        () => Interlocked.Read(ref _webhookQueue), "{delivery}", "Webhook deliveries waiting to be sent or retried, as the dispatcher last counted them.");
}
