using System.ComponentModel;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>An operator's request to run expiry and promised-points conversion now (or as of an earlier instant).</summary>
public sealed record ExpireRequest(DateTimeOffset? AsOf = null);

/// <summary>
/// The points lifecycle: returns (ReturnBill), reversals of redemptions, release or cancellation of
/// TRIGGER_BASED points, the operator's expiry run, and the schedule and as-of reads.
/// </summary>
public static class LifecycleApi
{
    public static RouteGroupBuilder MapLifecycleApi(this RouteGroupBuilder v1)
    {
        var writes = v1.MapGroup("/").WithTags("Lifecycle").RequireAuthorization(CallerClaims.Write);
        writes.MapPost("/returns", (NewReturn request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => Returns.ReturnBillAsync(p, request)))
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status422UnprocessableEntity).WithName("ReturnBill").WithSummary("Returns all or part of a bill (ReturnBill): takes back its points pro rata.");
        writes.MapPost("/redemptions/reversals", (NewReversal request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => Reversals.ReverseRedemptionAsync(p, request)))
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status422UnprocessableEntity).WithName("ReverseRedemption").WithSummary("Reverses all or part of a redemption: points go back to the lots they came from.");
        writes.MapPost("/lifecycle/triggers/release", (BillReference request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => HeldPoints.SettleTriggerAsync(p, request, release: true)))
            .Refuses(StatusCodes.Status404NotFound).WithName("ReleaseTriggeredPoints").WithSummary("Releases a bill's TRIGGER_BASED points to the main wallet (DelayedAccrual).");
        writes.MapPost("/lifecycle/triggers/cancel", (BillReference request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => HeldPoints.SettleTriggerAsync(p, request, release: false)))
            .Refuses(StatusCodes.Status404NotFound).WithName("CancelTriggeredPoints").WithSummary("Cancels a bill's TRIGGER_BASED points.");

        var lifecycle = v1.MapGroup("/lifecycle").WithTags("Lifecycle");
        lifecycle.MapPost("/expire", ExpireAsync).WithName("RunExpiry")
            .WithSummary("Converts due promised points and expires due points of this organization now (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        lifecycle.MapGet("/expiry-schedule", ExpiryScheduleAsync).Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithName("GetExpirySchedule")
            .WithSummary("Upcoming expiries of a customer's or group's main points, soonest first.");
        lifecycle.MapGet("/held-schedule", HeldScheduleAsync).Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithName("GetHeldSchedule")
            .WithSummary("Promised points and when they convert; points waiting for a trigger.");
        lifecycle.MapGet("/balances", BalancesAsOfAsync).Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithName("GetBalancesAsOf")
            .WithSummary("A customer's or group's balances as they stood at asOf.");
        return v1;
    }

    /// <remarks>
    /// The run settles each wallet by a posting of its own (many of them sharing commits, through
    /// group commit), so it goes through
    /// <see cref="IdempotentWriter.RunAsync"/>: the Idempotency-Key is claimed before it starts and
    /// the answer stored when it ends.
    /// </remarks>
    private static Task<OkAnswer<LifecycleRunResult>> ExpireAsync(ExpireRequest? request, HttpContext http, LedgerDatabase db, TimeProvider clock,
        IdempotentWriter writer)
    {
        var caller = http.User.Caller();
        var now = clock.GetUtcNow();
        var asOf = request?.AsOf ?? now;
        if (asOf > now) throw LedgerException.Invalid("asOf cannot be in the future: that would expire points before their date.");
        return writer.RunOkAsync(http, request ?? new ExpireRequest(),
            ct => LifecycleRun.RunAsync(db, caller.OrgId, asOf, now, caller.KeyId, ct));
    }

    private static async Task<Ok<IReadOnlyList<ExpiryScheduleItem>>> ExpiryScheduleAsync(
        [Description("The customer (or give groupId).")] string? customerId,
        [Description("The user group (or give customerId).")] string? groupId,
        [Description("Only this program.")] string? programId,
        [Description("true: only the soonest expiry per program and currency.")] string? earliestOnly,
        HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        var program = QueryParameters.Long(programId, "programId");
        var earliest = QueryParameters.Bool(earliestOnly, "earliestOnly") ?? false;
        var owner = Owner(customerId, groupId);
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            var (type, id) = await RequireOwnerAsync(c, db.Dialect, orgId, owner, http.RequestAborted);
            return await Schedules.ExpiryScheduleAsync(c, db.Dialect, orgId, type, id, program, earliest, http.RequestAborted);
        }, ConsistencyTokens.Read(http), http.RequestAborted));
    }

    private static async Task<Ok<IReadOnlyList<HeldScheduleItem>>> HeldScheduleAsync(
        [Description("The customer (or give groupId).")] string? customerId,
        [Description("The user group (or give customerId).")] string? groupId,
        HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        var owner = Owner(customerId, groupId);
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            var (type, id) = await RequireOwnerAsync(c, db.Dialect, orgId, owner, http.RequestAborted);
            return await Schedules.HeldScheduleAsync(c, db.Dialect, orgId, type, id, http.RequestAborted);
        }, ConsistencyTokens.Read(http), http.RequestAborted));
    }

    private static async Task<Ok<IReadOnlyList<BalanceAsOf>>> BalancesAsOfAsync(
        [Description("The customer (or give groupId).")] string? customerId,
        [Description("The user group (or give customerId).")] string? groupId,
        [Description("The instant: ISO 8601 with seconds and a UTC offset, e.g. 2024-05-04T07:16:34.000Z.")] string? asOf,
        HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        var at = QueryParameters.Time(asOf, "asOf") ?? throw LedgerException.Invalid($"asOf is required: {IsoTime.ExpectedDateTime}.");
        var owner = Owner(customerId, groupId);
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            var (type, id) = await RequireOwnerAsync(c, db.Dialect, orgId, owner, http.RequestAborted);
            return await Schedules.BalancesAsOfAsync(c, db.Dialect, orgId, type, id, at, http.RequestAborted);
        }, ConsistencyTokens.Read(http), http.RequestAborted));
    }

    private static (long? CustomerId, long? GroupId) Owner(string? customerId, string? groupId) =>
        (QueryParameters.Long(customerId, "customerId"), QueryParameters.Long(groupId, "groupId"));

    private static async Task<(OwnerType Type, long Id)> RequireOwnerAsync(System.Data.Common.DbConnection c, SqlDialect dialect, long orgId,
        (long? CustomerId, long? GroupId) owner, CancellationToken ct)
    {
        var (customerId, groupId) = owner;
        if ((customerId is null) == (groupId is null)) throw LedgerException.Invalid("Name exactly one of customerId or groupId.");
        if (customerId is { } cid)
        {
            await CustomerDirectory.RequireAsync(c, dialect, orgId, cid, null, ct);
            return (OwnerType.Customer, cid);
        }
        var group = await GroupDirectory.RequireAsync(c, dialect, orgId, groupId!.Value, null, ct);
        return (OwnerType.Group, group.GroupId);
    }
}
