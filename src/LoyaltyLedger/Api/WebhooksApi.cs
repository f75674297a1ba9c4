using System.ComponentModel;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Webhooks;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// Webhook endpoints (admin keys): where the organization's events are sent, signed per Standard
/// Webhooks, and the log of every delivery attempt. The sending is <see cref="WebhookDispatcher"/>'s.
/// </summary>
/// <remarks>
/// Every write honours the Idempotency-Key header; the answers that carry a signing secret (create,
/// rotate-secret) are stored sealed, like a key's (see <see cref="IdempotentWriter.PostAsync"/>), so a
/// retried create answers the same endpoint and secret, never a second endpoint.
/// </remarks>
public static class WebhooksApi
{
    public const int DefaultPageSize = 20;
    public const int MaxPageSize = 100;

    public static RouteGroupBuilder MapWebhooksApi(this RouteGroupBuilder v1)
    {
        var webhooks = v1.MapGroup("/webhooks").WithTags("Webhooks").RequireAuthorization(CallerClaims.Admin);
        webhooks.MapGet("/", ListAsync).WithName("ListWebhooks").WithSummary("The organization's webhook endpoints (never their secrets).");
        webhooks.MapPost("/", CreateAsync).WithName("CreateWebhook")
            .WithSummary("Adds an endpoint for the given event types (or \"*\"); the signing secret is shown once.");
        webhooks.MapGet("/{id:long}", GetAsync).Refuses(StatusCodes.Status404NotFound).WithName("GetWebhook").WithSummary("One endpoint.");
        webhooks.MapPatch("/{id:long}", UpdateAsync).Refuses(StatusCodes.Status404NotFound).WithName("UpdateWebhook")
            .WithSummary("Changes an endpoint's url, events or description, or enables (re-enables) or disables it.");
        webhooks.MapDelete("/{id:long}", DeleteAsync).Refuses(StatusCodes.Status404NotFound).WithName("DeleteWebhook")
            .WithSummary("Deletes an endpoint with its queue and delivery log.");
        webhooks.MapPost("/{id:long}/rotate-secret", RotateSecretAsync).Refuses(StatusCodes.Status404NotFound)
            .WithName("RotateWebhookSecret").WithSummary("Gives an endpoint a new signing secret; the old one also signs for 24 hours.");
        webhooks.MapPost("/{id:long}/test", TestAsync).Refuses(StatusCodes.Status404NotFound)
            .WithName("TestWebhook").WithSummary("Queues a webhook.test event to the endpoint, delivered like any event.");
        webhooks.MapGet("/{id:long}/deliveries", DeliveriesAsync).Refuses(StatusCodes.Status404NotFound).WithName("ListWebhookDeliveries")
            .WithSummary("The endpoint's deliveries, newest first, each with every attempt: time, status code, duration, error, next try.");
        webhooks.MapPost("/{id:long}/deliveries/{deliveryId:long}/redeliver", RedeliverAsync)
            .Refuses(StatusCodes.Status404NotFound).WithName("RedeliverWebhook")
            .WithSummary("Sends a delivery again: a pending one now, a finished one queued anew with the same webhook-id.");
        return v1;
    }

    private static async Task<Ok<IReadOnlyList<WebhookView>>> ListAsync(HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await db.ReadAsync(c => WebhookEndpoints.ListAsync(c, http.User.Caller().OrgId, http.RequestAborted), http.RequestAborted));

    private static async Task<Ok<WebhookView>> GetAsync(long id, HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await db.ReadAsync(c => WebhookEndpoints.GetAsync(c, http.User.Caller().OrgId, id, null, http.RequestAborted), http.RequestAborted));

    private static Task<CreatedAnswer<CreatedWebhook>> CreateAsync(NewWebhook request, HttpContext http, IdempotentWriter writer, WebhookSecrets secrets) =>
        writer.PostCreatedAsync(http, request, posting => WebhookEndpoints.CreateAsync(posting, request, secrets), sealAnswer: true);

    private static Task<OkAnswer<WebhookView>> UpdateAsync(long id, WebhookChange request, HttpContext http, IdempotentWriter writer) =>
        writer.PostOkAsync(http, request, posting => WebhookEndpoints.UpdateAsync(posting, id, request));

    private static Task<NoContentAnswer> DeleteAsync(long id, HttpContext http, IdempotentWriter writer) =>
        writer.PostNoContentAsync(http, new { id }, async posting =>
        {
            await WebhookEndpoints.DeleteAsync(posting, id);
            return true;
        });

    private static Task<OkAnswer<WebhookSecret>> RotateSecretAsync(long id, HttpContext http, IdempotentWriter writer, WebhookSecrets secrets) =>
        writer.PostOkAsync(http, new { id }, posting => WebhookEndpoints.RotateSecretAsync(posting, id, secrets), sealAnswer: true);

    private static Task<AcceptedAnswer<WebhookDelivery>> TestAsync(long id, HttpContext http, IdempotentWriter writer) =>
        writer.PostAcceptedAsync(http, new { id }, posting => WebhookEndpoints.QueueTestAsync(posting, id));

    private static async Task<Ok<WebhookDeliveryPage>> DeliveriesAsync(long id, HttpContext http, LedgerDatabase db,
        [Description("Deliveries older than this one (the nextBefore of the previous page).")] string? before,
        [Description("Deliveries per page, 1 to 100 (default 20).")] string? limit,
        [Description("Only deliveries in this state: pending, succeeded or failed.")] string? status)
    {
        var beforeId = QueryParameters.Long(before, "before");
        var size = QueryParameters.Int(limit, "limit") ?? DefaultPageSize;
        if (size is < 1 or > MaxPageSize) throw LedgerException.Invalid($"limit is 1 to {MaxPageSize}.");
        if (status is not null && !DeliveryStatus.IsKnown(status)) throw LedgerException.Invalid("status is pending, succeeded or failed.");
        return TypedResults.Ok(await db.ReadAsync(c => WebhookEndpoints.DeliveriesAsync(c, db.Dialect, http.User.Caller().OrgId, id, beforeId, size, status, http.RequestAborted), http.RequestAborted));
    }

    private static Task<AcceptedAnswer<WebhookDelivery>> RedeliverAsync(long id, long deliveryId, HttpContext http, IdempotentWriter writer) =>
        writer.PostAcceptedAsync(http, new { id, deliveryId }, posting => WebhookEndpoints.RedeliverAsync(posting, id, deliveryId));
}
