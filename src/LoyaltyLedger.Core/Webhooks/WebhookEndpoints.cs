using System.Data.Common;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Webhooks;

/// <summary>
/// An organization's webhook endpoints and their delivery logs, as the admin API reads and changes
/// them. Every change runs in the caller's <see cref="Posting"/> transaction (with the request's
/// Idempotency-Key); every query is scoped to the organization, so another organization's endpoint
/// is as unknown as one that never existed.
/// </summary>
public static class WebhookEndpoints
{
    public const int MaxDescriptionLength = 500;

    /// <summary>How long a rotated-out secret still signs (beside the new one), so receivers can switch without losing a delivery.</summary>
    public static readonly TimeSpan PreviousSecretGrace = TimeSpan.FromHours(24);

    internal sealed class Row
    {
        public long EndpointId { get; set; }
        public long OrgId { get; set; }
        public string Url { get; set; } = "";
        public string Events { get; set; } = "[]";
        public string? Description { get; set; }
        public long Enabled { get; set; }
        public string? DisabledReason { get; set; }
        public long? DisabledAt { get; set; }
        public long CreatedAt { get; set; }

        public WebhookView View() => new(EndpointId, Url, ParseEvents(Events), Enabled != 0, Description,
            DateTimeOffset.FromUnixTimeMilliseconds(CreatedAt), DisabledReason,
            DisabledAt is { } at ? DateTimeOffset.FromUnixTimeMilliseconds(at) : null);
    }

    private const string Columns = "endpoint_id, org_id, url, events, description, enabled, disabled_reason, disabled_at, created_at";

    internal static IReadOnlyList<string> ParseEvents(string json) => JsonSerializer.Deserialize<List<string>>(json) ?? [];

    public static async Task<CreatedWebhook> CreateAsync(Posting posting, NewWebhook request, WebhookSecrets secrets)
    {
        var url = WebhookUrl.Validate(request.Url);
        var events = WebhookEventTypes.Validate(request.Events);
        var description = Description(request.Description);
        var secret = WebhookSecrets.NewSecret();
        // Events from now on: the cursor starts at the outbox's last position. (An event committed
        // later takes a higher one at its commit; one an earlier version wrote without a position gets
        // a later one from the sequencer. Both are delivered.)
        var cursor = await posting.ScalarAsync<long?>("SELECT MAX(position) FROM outbox_events WHERE position IS NOT NULL") ?? 0;
        var id = await posting.ScalarAsync<long>(
            """
            INSERT INTO webhook_endpoints (org_id, url, events, description, secret, previous_secret, previous_secret_until, enabled,
                disabled_reason, disabled_at, failed_in_a_row, cursor_position, lease_owner, lease_until, created_at, updated_at)
            VALUES (@org, @url, @events, @description, @secret, NULL, NULL, 1, NULL, NULL, 0, @cursor, NULL, NULL, @now, @now)
            RETURNING endpoint_id
            """,
            new { org = posting.OrgId, url, events = JsonSerializer.Serialize(events), description, secret = secrets.Protect(secret, posting.OrgId), cursor, now = posting.NowMs });
        return new CreatedWebhook(id, url, events, true, description, DateTimeOffset.FromUnixTimeMilliseconds(posting.NowMs), secret);
    }

    public static async Task<IReadOnlyList<WebhookView>> ListAsync(DbConnection c, long orgId, CancellationToken ct) =>
        (await c.QueryAsync<Row>(new CommandDefinition($"SELECT {Columns} FROM webhook_endpoints WHERE org_id = @orgId ORDER BY endpoint_id", new { orgId }, cancellationToken: ct)))
        .Select(r => r.View()).ToList();

    public static async Task<WebhookView> GetAsync(DbConnection c, long orgId, long id, DbTransaction? tx, CancellationToken ct) =>
        (await RequireAsync(c, orgId, id, tx, ct)).View();

    private static async Task<Row> RequireAsync(DbConnection c, long orgId, long id, DbTransaction? tx, CancellationToken ct) =>
        await c.QuerySingleOrDefaultAsync<Row>(new CommandDefinition($"SELECT {Columns} FROM webhook_endpoints WHERE org_id = @orgId AND endpoint_id = @id",
            new { orgId, id }, tx, cancellationToken: ct))
        ?? throw LedgerException.NotFound("webhook", id);

    public static async Task<WebhookView> UpdateAsync(Posting posting, long id, WebhookChange change)
    {
        var current = await posting.WithConnectionAsync((conn, tx) => RequireAsync(conn, posting.OrgId, id, tx, posting.Cancellation));
        var url = change.Url is null ? current.Url : WebhookUrl.Validate(change.Url);
        var events = change.Events is null ? current.Events : JsonSerializer.Serialize(WebhookEventTypes.Validate(change.Events));
        var description = change.Description is null ? current.Description : Description(change.Description);
        var enabled = change.Enabled ?? current.Enabled != 0;
        var (reason, disabledAt) = (enabled, current.Enabled != 0) switch
        {
            (true, _) => ((string?)null, (long?)null),
            (false, true) => ("Disabled through the API.", posting.NowMs),
            (false, false) => (current.DisabledReason, current.DisabledAt),
        };
        // Re-enabling starts the failure count afresh; the queue and the cursor are where they
        // stopped, so what happened while the endpoint was disabled is delivered now, in order.
        await posting.ExecuteAsync(
            """
            UPDATE webhook_endpoints SET url = @url, events = @events, description = @description, enabled = @enabled,
                disabled_reason = @reason, disabled_at = @disabledAt,
                failed_in_a_row = CASE WHEN @reenabled = 1 THEN 0 ELSE failed_in_a_row END, updated_at = @now
            WHERE org_id = @org AND endpoint_id = @id
            """,
            new
            {
                url, events, description, enabled = enabled ? 1 : 0, reason, disabledAt,
                reenabled = enabled && current.Enabled == 0 ? 1 : 0, now = posting.NowMs, org = posting.OrgId, id,
            });
        return await posting.WithConnectionAsync((conn, tx) => GetAsync(conn, posting.OrgId, id, tx, posting.Cancellation));
    }

    /// <summary>Deletes the endpoint with its queue and log; a dispatcher sending to it stops at its next step.</summary>
    public static async Task DeleteAsync(Posting posting, long id)
    {
        await posting.WithConnectionAsync((conn, tx) => RequireAsync(conn, posting.OrgId, id, tx, posting.Cancellation));
        var batch = posting.Batch();
        // By delivery (the attempts' index), not by endpoint: the log is the largest of the three tables.
        batch.Execute("DELETE FROM webhook_attempts WHERE org_id = @org AND delivery_id IN (SELECT delivery_id FROM webhook_deliveries WHERE org_id = @org AND endpoint_id = @id)", new { org = posting.OrgId, id });
        batch.Execute("DELETE FROM webhook_deliveries WHERE org_id = @org AND endpoint_id = @id", new { org = posting.OrgId, id });
        batch.Execute("DELETE FROM webhook_endpoints WHERE org_id = @org AND endpoint_id = @id", new { org = posting.OrgId, id });
        await batch.RunAsync();
    }

    /// <summary>
    /// A new secret for the endpoint. For <see cref="PreviousSecretGrace"/> every delivery is signed
    /// with both (two <c>v1,</c> signatures in <c>webhook-signature</c>), so a receiver that still
    /// verifies with the old one keeps accepting while it moves to the new one.
    /// </summary>
    public static async Task<WebhookSecret> RotateSecretAsync(Posting posting, long id, WebhookSecrets secrets)
    {
        await posting.WithConnectionAsync((conn, tx) => RequireAsync(conn, posting.OrgId, id, tx, posting.Cancellation));
        var secret = WebhookSecrets.NewSecret();
        var until = posting.Now + PreviousSecretGrace;
        await posting.ExecuteAsync(
            """
            UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = @until, secret = @secret, updated_at = @now
            WHERE org_id = @org AND endpoint_id = @id
            """,
            new { until = until.ToUnixTimeMilliseconds(), secret = secrets.Protect(secret, posting.OrgId), now = posting.NowMs, org = posting.OrgId, id });
        return new WebhookSecret(id, secret, until);
    }

    /// <summary>
    /// Queues a <c>webhook.test</c> ping to the endpoint, whatever it subscribes to. It is delivered
    /// like any event: signed, retried, logged, and after what is already queued for the endpoint.
    /// </summary>
    public static async Task<WebhookDelivery> QueueTestAsync(Posting posting, long id)
    {
        var endpoint = await posting.WithConnectionAsync((conn, tx) => RequireAsync(conn, posting.OrgId, id, tx, posting.Cancellation));
        var messageId = "evt_test_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var payload = new JsonObject
        {
            ["id"] = messageId,
            ["type"] = OutboxEventTypes.WebhookTest,
            ["createdAt"] = IsoTime.Format(posting.NowMs),
            ["orgId"] = posting.OrgId,
            ["data"] = new JsonObject { ["webhookId"] = id, ["url"] = endpoint.Url, ["message"] = "A test event sent through POST /v1/webhooks/{id}/test." },
        }.ToJsonString();
        var deliveryId = await QueueAsync(posting, id, null, null, messageId, OutboxEventTypes.WebhookTest, payload);
        return await posting.WithConnectionAsync((conn, tx) => DeliveryAsync(conn, posting.Dialect, posting.OrgId, id, deliveryId, tx, posting.Cancellation));
    }

    /// <summary>
    /// Sends a delivery again. A pending one is tried now instead of at its next scheduled try; a
    /// finished one (succeeded or failed) is queued again as a new delivery of the same event, with
    /// the same <c>webhook-id</c>, after what is already queued for the endpoint.
    /// </summary>
    public static async Task<WebhookDelivery> RedeliverAsync(Posting posting, long id, long deliveryId)
    {
        await posting.WithConnectionAsync((conn, tx) => RequireAsync(conn, posting.OrgId, id, tx, posting.Cancellation));
        var original = await posting.QuerySingleOrDefaultAsync<(long? EventId, long? Position, string MessageId, string EventType, string? Payload, string Status)?>(
            """
            SELECT event_id, position, message_id, event_type, payload, status FROM webhook_deliveries
            WHERE org_id = @org AND endpoint_id = @id AND delivery_id = @deliveryId
            """,
            new { org = posting.OrgId, id, deliveryId })
            ?? throw LedgerException.NotFound("webhook_delivery", deliveryId);
        if (original.Status == DeliveryStatus.Pending)
        {
            await posting.ExecuteAsync("UPDATE webhook_deliveries SET next_attempt_at = @now WHERE org_id = @org AND delivery_id = @deliveryId",
                new { now = posting.NowMs, org = posting.OrgId, deliveryId });
            return await posting.WithConnectionAsync((conn, tx) => DeliveryAsync(conn, posting.Dialect, posting.OrgId, id, deliveryId, tx, posting.Cancellation));
        }
        var again = await QueueAsync(posting, id, original.EventId, original.Position, original.MessageId, original.EventType, original.Payload);
        return await posting.WithConnectionAsync((conn, tx) => DeliveryAsync(conn, posting.Dialect, posting.OrgId, id, again, tx, posting.Cancellation));
    }

    private static Task<long> QueueAsync(Posting posting, long endpointId, long? eventId, long? position, string messageId, string type, string? payload) =>
        posting.ScalarAsync<long>(
            """
            INSERT INTO webhook_deliveries (org_id, endpoint_id, event_id, position, message_id, event_type, payload, status, attempts,
                next_attempt_at, last_status_code, last_error, created_at, completed_at)
            VALUES (@org, @endpointId, @eventId, @position, @messageId, @type, @payload, 'pending', 0, @now, NULL, NULL, @now, NULL)
            RETURNING delivery_id
            """,
            new { org = posting.OrgId, endpointId, eventId, position, messageId, type, payload, now = posting.NowMs });

    private sealed class DeliveryRow
    {
        public long DeliveryId { get; set; }
        public long EndpointId { get; set; }
        public string MessageId { get; set; } = "";
        public string EventType { get; set; } = "";
        public string Status { get; set; } = "";
        public long Attempts { get; set; }
        public long CreatedAt { get; set; }
        public long? NextAttemptAt { get; set; }
        public long? CompletedAt { get; set; }
    }

    private sealed class AttemptRow
    {
        public long DeliveryId { get; set; }
        public long Attempt { get; set; }
        public long AttemptedAt { get; set; }
        public long? StatusCode { get; set; }
        public long DurationMs { get; set; }
        public string? Error { get; set; }
        public long? NextAttemptAt { get; set; }
    }

    private const string DeliveryColumns = "delivery_id, endpoint_id, message_id, event_type, status, attempts, created_at, next_attempt_at, completed_at";

    /// <summary>An endpoint's deliveries, newest first, each with its attempts; <paramref name="before"/> pages on.</summary>
    public static async Task<WebhookDeliveryPage> DeliveriesAsync(DbConnection c, SqlDialect dialect, long orgId, long id, long? before, int limit, string? status, CancellationToken ct)
    {
        await RequireAsync(c, orgId, id, null, ct);
        var filters = (before is null ? "" : " AND delivery_id < @before") + (status is null ? "" : " AND status = @status");
        var rows = (await c.QueryAsync<DeliveryRow>(
            new CommandDefinition($"""
            SELECT {DeliveryColumns} FROM webhook_deliveries
            WHERE org_id = @orgId AND endpoint_id = @id{filters}
            ORDER BY delivery_id DESC LIMIT @take
            """,
            new { orgId, id, before, status, take = limit + 1 }, cancellationToken: ct))).ToList();
        var page = rows.Take(limit).ToList();
        var views = await ViewsAsync(c, dialect, orgId, page, null, ct);
        return new WebhookDeliveryPage(views, rows.Count > limit ? page[^1].DeliveryId : null);
    }

    private static async Task<WebhookDelivery> DeliveryAsync(DbConnection c, SqlDialect dialect, long orgId, long id, long deliveryId, DbTransaction? tx, CancellationToken ct)
    {
        var row = await c.QuerySingleAsync<DeliveryRow>(
            new CommandDefinition($"SELECT {DeliveryColumns} FROM webhook_deliveries WHERE org_id = @orgId AND endpoint_id = @id AND delivery_id = @deliveryId",
            new { orgId, id, deliveryId }, tx, cancellationToken: ct));
        return (await ViewsAsync(c, dialect, orgId, [row], tx, ct))[0];
    }

    private static async Task<IReadOnlyList<WebhookDelivery>> ViewsAsync(DbConnection c, SqlDialect dialect, long orgId, IReadOnlyList<DeliveryRow> rows, DbTransaction? tx, CancellationToken ct)
    {
        if (rows.Count == 0) return [];
        var attempts = (await c.QueryAsync<AttemptRow>(
            new CommandDefinition($"SELECT delivery_id, attempt, attempted_at, status_code, duration_ms, error, next_attempt_at FROM webhook_attempts WHERE org_id = @orgId AND {dialect.InIdList("delivery_id", "ids")} ORDER BY delivery_id, attempt",
            new { orgId, ids = dialect.IdList(rows.Select(r => r.DeliveryId)) }, tx, cancellationToken: ct))).ToLookup(a => a.DeliveryId);
        return rows.Select(r => new WebhookDelivery(r.DeliveryId, r.EndpointId, r.MessageId, r.EventType, r.Status, (int)r.Attempts,
            At(r.CreatedAt), r.NextAttemptAt is { } next && r.Status == DeliveryStatus.Pending ? At(next) : null, r.CompletedAt is { } done ? At(done) : null,
            attempts[r.DeliveryId].Select(a => new WebhookAttempt((int)a.Attempt, At(a.AttemptedAt), a.StatusCode is { } s ? (int)s : null,
                a.DurationMs, a.Error, a.NextAttemptAt is { } n ? At(n) : null)).ToList())).ToList();
    }

    private static DateTimeOffset At(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);

    private static string? Description(string? text) =>
        text is null || text.Length == 0 ? null
        : text.Length > MaxDescriptionLength ? throw LedgerException.Invalid($"description is at most {MaxDescriptionLength} characters.")
        : text;
}
