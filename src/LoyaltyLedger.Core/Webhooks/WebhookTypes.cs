namespace LoyaltyLedger.Webhooks;

/// <summary>A new endpoint: where to send, which event types (<c>*</c> for all), and a note for people.</summary>
public sealed record NewWebhook(string Url, IReadOnlyList<string> Events, string? Description = null);

/// <summary>
/// A change to an endpoint; what is absent (or null) stays as it is. <see cref="Enabled"/> true
/// re-enables an endpoint that was disabled (by its failures or by hand), false disables it.
/// </summary>
public sealed record WebhookChange(string? Url = null, IReadOnlyList<string>? Events = null, string? Description = null, bool? Enabled = null);

/// <summary>An endpoint as its organization's admins see it: never its secret.</summary>
public sealed record WebhookView(
    long Id,
    string Url,
    IReadOnlyList<string> Events,
    bool Enabled,
    string? Description,
    DateTimeOffset CreatedAt,
    string? DisabledReason = null,
    DateTimeOffset? DisabledAt = null);

/// <summary>A new endpoint with its signing secret, shown this once.</summary>
public sealed record CreatedWebhook(
    long Id,
    string Url,
    IReadOnlyList<string> Events,
    bool Enabled,
    string? Description,
    DateTimeOffset CreatedAt,
    string Secret);

/// <summary>An endpoint's new signing secret, shown this once.</summary>
public sealed record WebhookSecret(long Id, string Secret, DateTimeOffset PreviousSecretValidUntil);

/// <summary>One attempt to deliver: when, what the receiver answered (or the error), how long it took, when the next try is.</summary>
public sealed record WebhookAttempt(
    int Attempt,
    DateTimeOffset AttemptedAt,
    int? StatusCode,
    long DurationMs,
    string? Error,
    DateTimeOffset? NextAttemptAt);

/// <summary>
/// One event on its way to one endpoint. <see cref="Status"/> is <c>pending</c> (queued or waiting
/// for its next try), <c>succeeded</c> (a 2xx answer) or <c>failed</c> (every try failed).
/// <see cref="MessageId"/> is the <c>webhook-id</c> header, the same for every try and redelivery of an
/// event, so receivers de-duplicate by it.
/// </summary>
public sealed record WebhookDelivery(
    long DeliveryId,
    long WebhookId,
    string MessageId,
    string EventType,
    string Status,
    int Attempts,
    DateTimeOffset CreatedAt,
    DateTimeOffset? NextAttemptAt,
    DateTimeOffset? CompletedAt,
    IReadOnlyList<WebhookAttempt> AttemptLog);

/// <summary>A page of an endpoint's deliveries, newest first; <see cref="NextBefore"/> asks for the next page.</summary>
public sealed record WebhookDeliveryPage(IReadOnlyList<WebhookDelivery> Deliveries, long? NextBefore);

/// <summary>The delivery states as stored.</summary>
public static class DeliveryStatus
{
    public const string Pending = "pending";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";

    public static bool IsKnown(string value) => value is Pending or Succeeded or Failed;
}
