using System.Globalization;
using System.Text;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Webhooks;

/// <summary>An endpoint a dispatcher holds the lease of, with what it needs to send.</summary>
public sealed record ClaimedEndpoint(long EndpointId, long OrgId, string Url, string Secret, string? PreviousSecret, long? PreviousSecretUntil, long FailedInARow);

/// <summary>A pending delivery at the head of an endpoint's queue, with the body to send.</summary>
public sealed record QueuedDelivery(long DeliveryId, string MessageId, string EventType, string? Payload, long Attempts, long? NextAttemptAt);

/// <summary>What one attempt came to. <see cref="NextAttemptAt"/> is null when it succeeded or was the last try.</summary>
public sealed record AttemptOutcome(QueuedDelivery Delivery, long AttemptedAt, int? StatusCode, long DurationMs, string? Error, bool Succeeded, long? NextAttemptAt)
{
    public long Attempt => Delivery.Attempts + 1;
    public bool FailedForGood => !Succeeded && NextAttemptAt is null;
}

/// <summary>
/// The database side of webhook delivery: fanning outbox events out into per-endpoint queues,
/// leasing endpoints to dispatchers, and recording attempts. The sending is the server's
/// (<c>Hosting/WebhookDispatcher.cs</c>).
/// </summary>
/// <remarks>
/// <para><b>Order.</b> A delivery's place in its endpoint's queue is its <c>delivery_id</c>. Fan-out
/// inserts in outbox position order and runs in one process at a time (a transaction-level advisory
/// lock on PostgreSQL; SQLite has one writer), so per endpoint, ids follow commit order. A dispatcher
/// sends an endpoint's queue front to back and stops at a delivery that must wait for a retry: a
/// later event is never sent while an earlier one to the same endpoint is pending (head-of-line).</para>
/// <para><b>One sender per endpoint.</b> A dispatcher leases whole endpoints: it claims them with
/// <c>FOR UPDATE SKIP LOCKED</c> (so two servers never claim the same one), sets <c>lease_owner</c>
/// and <c>lease_until</c>, renews the lease while it sends and clears it when done. Each delivery is
/// therefore sent by exactly one process; one whose server died is taken over when its lease runs
/// out, and may then be sent again (at-least-once: receivers de-duplicate by <c>webhook-id</c>).</para>
/// </remarks>
public static class WebhookQueue
{
    private const long FanOutLockKey = 7340014;

    private sealed class EndpointCursor
    {
        public long EndpointId { get; set; }
        public long OrgId { get; set; }
        public string Events { get; set; } = "[]";
        public long CursorPosition { get; set; }
    }

    /// <summary>
    /// Queues the next outbox events (at most <paramref name="batch"/>) for every enabled endpoint
    /// of their organization that subscribes to their type, and moves the endpoints' cursors past
    /// them. Returns how many outbox events it read: a full batch means there may be more.
    /// </summary>
    public static async Task<int> FanOutAsync(LedgerDatabase db, long nowMs, int batch, CancellationToken ct)
    {
        var endpoints = (await db.ReadAsync(c => c.QueryAsync<EndpointCursor>(
            new CommandDefinition("SELECT endpoint_id, org_id, events, cursor_position FROM webhook_endpoints WHERE enabled = 1", cancellationToken: ct)), ct)).ToList();
        if (endpoints.Count == 0) return 0;
        var low = endpoints.Min(e => e.CursorPosition);
        // Read outside the write transaction: a positioned outbox row never changes, and positions
        // are assigned in commit order, so these are every event in (low, last].
        var events = await db.ReadAsync(c => Outbox.Outbox.ReadAllOrgsAsync(c, db.Dialect, low, batch, ct), ct);
        if (events.Count == 0) return 0;
        var last = events[^1].Position;

        await db.WriteAsync(async (c, tx) =>
        {
            if (!await db.Dialect.TryTransactionLockAsync(c, tx, FanOutLockKey, ct))
                return 0; // another server is fanning out; it will do these too
            // Cursors as committed now (the lock orders this after any other fan-out).
            var current = (await c.QueryAsync<EndpointCursor>(
                new CommandDefinition("SELECT endpoint_id, org_id, events, cursor_position FROM webhook_endpoints WHERE enabled = 1", transaction: tx, cancellationToken: ct))).ToList();
            var rows = new List<(long Org, long Endpoint, long EventId, long Position, string Type)>();
            var advanced = new List<long>();
            foreach (var endpoint in current)
            {
                // Behind the events read (created or re-enabled since): not covered by them; the next pass starts lower.
                if (endpoint.CursorPosition < low || endpoint.CursorPosition >= last) continue;
                var subscription = WebhookEndpoints.ParseEvents(endpoint.Events);
                foreach (var e in events)
                {
                    if (e.Position > endpoint.CursorPosition && e.OrgId == endpoint.OrgId && WebhookEventTypes.Matches(subscription, e.Type))
                        rows.Add((e.OrgId, endpoint.EndpointId, e.EventId, e.Position, e.Type));
                }
                advanced.Add(endpoint.EndpointId);
            }
            // Per endpoint, in position order: the queue's order.
            rows.Sort((a, b) => a.Endpoint != b.Endpoint ? a.Endpoint.CompareTo(b.Endpoint) : a.Position.CompareTo(b.Position));
            foreach (var chunk in rows.Chunk(200))
            {
                var sql = new StringBuilder(
                    """
                    INSERT INTO webhook_deliveries (org_id, endpoint_id, event_id, position, message_id, event_type, payload, status,
                        attempts, next_attempt_at, last_status_code, last_error, created_at, completed_at) VALUES
                    """);
                var args = new DynamicParameters();
                args.Add("now", nowMs);
                for (var i = 0; i < chunk.Length; i++)
                {
                    var n = i.ToString(CultureInfo.InvariantCulture);
                    sql.Append(i == 0 ? "\n" : ",\n").Append(CultureInfo.InvariantCulture,
                        $"(@o{n}, @e{n}, @v{n}, @p{n}, @m{n}, @t{n}, NULL, 'pending', 0, @now, NULL, NULL, @now, NULL)");
                    args.Add("o" + n, chunk[i].Org);
                    args.Add("e" + n, chunk[i].Endpoint);
                    args.Add("v" + n, chunk[i].EventId);
                    args.Add("p" + n, chunk[i].Position);
                    args.Add("m" + n, "evt_" + chunk[i].EventId.ToString(CultureInfo.InvariantCulture));
                    args.Add("t" + n, chunk[i].Type);
                }
                await c.ExecuteAsync(new CommandDefinition(sql.ToString(), args, tx, cancellationToken: ct));
            }
            if (advanced.Count > 0)
            {
                await c.ExecuteAsync(
                    new CommandDefinition($"UPDATE webhook_endpoints SET cursor_position = @last WHERE {db.Dialect.InIdList("endpoint_id", "advanced")} AND cursor_position < @last",
                    new { last, advanced = db.Dialect.IdList(advanced) }, tx, cancellationToken: ct));
            }
            return rows.Count;
        }, ct);
        return events.Count;
    }

    /// <summary>The head of each enabled endpoint's queue is due and nobody holds the endpoint: a cheap read before claiming.</summary>
    private const string DueEndpoints =
        """
        FROM webhook_endpoints e
        WHERE e.enabled = 1 AND (e.lease_until IS NULL OR e.lease_until < @now)
          AND (SELECT d.next_attempt_at FROM webhook_deliveries d
               WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending' ORDER BY d.delivery_id LIMIT 1) <= @now
        """;

    /// <summary>
    /// Leases up to <paramref name="max"/> endpoints whose next delivery is due to <paramref name="owner"/>
    /// until <paramref name="leaseUntil"/>.
    /// </summary>
    public static async Task<IReadOnlyList<ClaimedEndpoint>> ClaimAsync(LedgerDatabase db, string owner, long nowMs, long leaseUntil, int max, CancellationToken ct)
    {
        // Most polls find nothing due: find that out without a write transaction.
        var any = await db.ReadAsync(c => c.ExecuteScalarAsync<long?>(new CommandDefinition($"SELECT e.endpoint_id {DueEndpoints} LIMIT 1", new { now = nowMs }, cancellationToken: ct)), ct);
        if (any is null) return [];
        return await db.WriteAsync(async (c, tx) =>
        {
            var ids = (await c.QueryAsync<long>(
                new CommandDefinition($"SELECT e.endpoint_id {DueEndpoints} ORDER BY e.endpoint_id LIMIT @max{db.Dialect.ForUpdateSkipLocked("e")}",
                new { now = nowMs, max }, tx, cancellationToken: ct))).ToList();
            if (ids.Count == 0) return (IReadOnlyList<ClaimedEndpoint>)[];
            var claimed = await c.QueryAsync<ClaimedEndpoint>(
                new CommandDefinition($"""
                UPDATE webhook_endpoints SET lease_owner = @owner, lease_until = @leaseUntil
                WHERE {db.Dialect.InIdList("endpoint_id", "ids")}
                RETURNING endpoint_id, org_id, url, secret, previous_secret, previous_secret_until, failed_in_a_row
                """,
                new { owner, leaseUntil, ids = db.Dialect.IdList(ids) }, tx, cancellationToken: ct));
            return claimed.ToList();
        }, ct);
    }

    /// <summary>Deliveries waiting to be sent or retried, across organizations (the queue depth metric).</summary>
    public static Task<long> CountPendingAsync(LedgerDatabase db, CancellationToken ct) =>
        db.ReadAsync(c => c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'", cancellationToken: ct)), ct);

    /// <summary>The first <paramref name="limit"/> pending deliveries of an endpoint, in queue order, with their bodies.</summary>
    public static async Task<IReadOnlyList<QueuedDelivery>> PendingAsync(LedgerDatabase db, long orgId, long endpointId, int limit, CancellationToken ct) =>
        (await db.ReadAsync(c => c.QueryAsync<QueuedDelivery>(
            new CommandDefinition("""
            SELECT d.delivery_id, d.message_id, d.event_type, COALESCE(d.payload, o.payload) AS payload, d.attempts, d.next_attempt_at
            FROM webhook_deliveries d LEFT JOIN outbox_events o ON o.org_id = d.org_id AND o.event_id = d.event_id
            WHERE d.org_id = @orgId AND d.endpoint_id = @endpointId AND d.status = 'pending'
            ORDER BY d.delivery_id LIMIT @limit
            """, new { orgId, endpointId, limit }, cancellationToken: ct)), ct)).ToList();

    /// <summary>
    /// Records attempts and the endpoint's state in one transaction, and renews the lease (or, with
    /// <paramref name="release"/>, gives it up). Returns false when the lease is no longer this
    /// dispatcher's (it ran out and another took the endpoint, or the endpoint was deleted or
    /// disabled): the caller stops sending to it.
    /// </summary>
    public static Task<bool> RecordAsync(LedgerDatabase db, long orgId, long endpointId, string owner, IReadOnlyList<AttemptOutcome> outcomes,
        long failedInARow, string? disableReason, long nowMs, long leaseUntil, bool release, CancellationToken ct) =>
        db.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Dialect);
            // The attempts in one multi-row insert and the successes in one update: a busy endpoint
            // costs three statements per hundred deliveries, not two per delivery.
            foreach (var chunk in outcomes.Chunk(200))
            {
                var sql = new StringBuilder(
                    "INSERT INTO webhook_attempts (org_id, delivery_id, endpoint_id, attempt, attempted_at, status_code, duration_ms, error, next_attempt_at) VALUES ");
                var values = new Dictionary<string, object?> { ["orgId"] = orgId, ["endpointId"] = endpointId };
                for (var i = 0; i < chunk.Length; i++)
                {
                    var (o, n) = (chunk[i], i.ToString(CultureInfo.InvariantCulture));
                    sql.Append(i == 0 ? "" : ", ").Append(CultureInfo.InvariantCulture, $"(@orgId, @d{n}, @endpointId, @a{n}, @t{n}, @c{n}, @u{n}, @e{n}, @x{n})");
                    values["d" + n] = o.Delivery.DeliveryId;
                    values["a" + n] = o.Attempt;
                    values["t" + n] = o.AttemptedAt;
                    values["c" + n] = (long?)o.StatusCode;
                    values["u" + n] = o.DurationMs;
                    values["e" + n] = o.Error;
                    values["x" + n] = o.NextAttemptAt;
                }
                batch.Execute(sql.ToString(), values);
            }
            var succeeded = outcomes.Where(o => o.Succeeded).Select(o => o.Delivery.DeliveryId).ToList();
            if (succeeded.Count > 0)
            {
                batch.Execute(
                    $"""
                    UPDATE webhook_deliveries SET attempts = attempts + 1, status = 'succeeded', next_attempt_at = NULL,
                        last_status_code = NULL, last_error = NULL, completed_at = @now
                    WHERE org_id = @orgId AND {db.Dialect.InIdList("delivery_id", "succeeded")} AND status = 'pending'
                    """,
                    new { now = nowMs, orgId, succeeded = db.Dialect.IdList(succeeded) });
            }
            foreach (var o in outcomes.Where(o => !o.Succeeded))
            {
                batch.Execute(
                    """
                    UPDATE webhook_deliveries SET attempts = @attempt, status = @status, next_attempt_at = @next,
                        last_status_code = @code, last_error = @error, completed_at = @completed
                    WHERE org_id = @orgId AND delivery_id = @id AND status = 'pending'
                    """,
                    new
                    {
                        attempt = o.Attempt, status = o.NextAttemptAt is null ? DeliveryStatus.Failed : DeliveryStatus.Pending,
                        next = o.NextAttemptAt, code = (long?)o.StatusCode, error = o.Error,
                        completed = o.NextAttemptAt is null ? o.AttemptedAt : (long?)null, orgId, id = o.Delivery.DeliveryId,
                    });
            }
            // Only the parameters the statement uses (a batch binds every one it is given).
            var args = new Dictionary<string, object?> { ["failedInARow"] = failedInARow, ["owner"] = owner, ["orgId"] = orgId, ["endpointId"] = endpointId };
            var giveUp = release || disableReason is not null;
            if (disableReason is not null) { args["disableReason"] = disableReason; args["now"] = nowMs; }
            if (!giveUp) args["leaseUntil"] = leaseUntil;
            var endpoint = batch.Execute(
                $"""
                UPDATE webhook_endpoints SET failed_in_a_row = @failedInARow,
                    {(disableReason is null ? "" : "enabled = 0, disabled_reason = @disableReason, disabled_at = @now, ")}
                    lease_owner = {(giveUp ? "NULL" : "@owner")}, lease_until = {(giveUp ? "NULL" : "@leaseUntil")}
                WHERE org_id = @orgId AND endpoint_id = @endpointId AND lease_owner = @owner AND enabled = 1
                """,
                args);
            var results = await batch.RunAsync(ct);
            return results.Affected(endpoint) == 1;
        }, ct);
}
