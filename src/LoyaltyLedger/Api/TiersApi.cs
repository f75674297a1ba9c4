using System.ComponentModel;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tiers;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>An operator's request to evaluate tiers now (or as of an earlier instant).</summary>
public sealed record TierEvaluationRequest(DateTimeOffset? AsOf = null);

/// <summary>
/// Tiers: a program's tier policy (admin), where a customer or group stands and how it got there,
/// an admin's override, and the operator's evaluation run.
/// </summary>
public static class TiersApi
{
    public static RouteGroupBuilder MapTiersApi(this RouteGroupBuilder v1)
    {
        var tiers = v1.MapGroup("/").WithTags("Tiers");
        tiers.MapPut("/programs/{programId:long}/tiers", SetPolicyAsync)
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status409Conflict).WithName("SetProgramTiers")
            .WithSummary("Sets a program's tiers, their thresholds, multipliers and bonuses, and the renewal rules (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        tiers.MapGet("/programs/{programId:long}/tiers", GetPolicyAsync).Refuses(StatusCodes.Status404NotFound).WithName("GetProgramTiers")
            .WithSummary("A program's tier policy.");

        tiers.MapGet("/customers/{customerId:long}/tier", (long customerId, string? programId, HttpContext http, LedgerDatabase db, TimeProvider clock) =>
                StatusAsync(OwnerType.Customer, customerId, programId, http, db, clock))
            .Refuses(StatusCodes.Status404NotFound).WithName("GetCustomerTier")
            .WithSummary("A customer's tier, its metric, what the next tier needs, and the renewal date and what keeping the tier needs.");
        tiers.MapGet("/groups/{groupId:long}/tier", (long groupId, string? programId, HttpContext http, LedgerDatabase db, TimeProvider clock) =>
                StatusAsync(OwnerType.Group, groupId, programId, http, db, clock))
            .Refuses(StatusCodes.Status404NotFound).WithName("GetGroupTier")
            .WithSummary("A pooling group's own tier, on the pooled metric.");
        tiers.MapGet("/customers/{customerId:long}/tier-history", (long customerId, string? programId, HttpContext http, LedgerDatabase db) =>
                HistoryAsync(OwnerType.Customer, customerId, programId, http, db))
            .Refuses(StatusCodes.Status404NotFound).WithName("GetCustomerTierHistory")
            .WithSummary("Every tier change of a customer, oldest first, with its cause and the posting or run that caused it.");
        tiers.MapGet("/groups/{groupId:long}/tier-history", (long groupId, string? programId, HttpContext http, LedgerDatabase db) =>
                HistoryAsync(OwnerType.Group, groupId, programId, http, db))
            .Refuses(StatusCodes.Status404NotFound).WithName("GetGroupTierHistory")
            .WithSummary("Every tier change of a group, oldest first.");

        tiers.MapPost("/customers/{customerId:long}/tier/override", (long customerId, NewTierOverride request, HttpContext http, IdempotentWriter writer) =>
                writer.PostOkAsync(http, request, p => TierOverrides.OverrideAsync(p, OwnerType.Customer, customerId, request)))
            .Refuses(StatusCodes.Status404NotFound).WithName("OverrideCustomerTier")
            .WithSummary("Sets a customer's tier by hand, with a reason; kept until the next evaluation unless pinned (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        tiers.MapPost("/groups/{groupId:long}/tier/override", (long groupId, NewTierOverride request, HttpContext http, IdempotentWriter writer) =>
                writer.PostOkAsync(http, request, p => TierOverrides.OverrideAsync(p, OwnerType.Group, groupId, request)))
            .Refuses(StatusCodes.Status404NotFound).WithName("OverrideGroupTier")
            .WithSummary("Sets a group's tier by hand, with a reason (admin key).")
            .RequireAuthorization(CallerClaims.Admin);

        v1.MapGroup("/lifecycle").WithTags("Lifecycle").MapPost("/tiers/evaluate", EvaluateAsync).WithName("EvaluateTiers")
            .WithSummary("Decides renewal or downgrade for every owner of this organization whose period ended by asOf (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        return v1;
    }

    private static Task<OkAnswer<TierPolicy>> SetPolicyAsync(long programId, TierPolicy request, HttpContext http, IdempotentWriter writer) =>
        writer.PostOkAsync(http, request, posting => TierCatalog.SetAsync(posting, programId, request));

    private static async Task<Ok<TierPolicy>> GetPolicyAsync(long programId, HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        var program = await db.ReadAsync(c => TierReads.TieredProgramAsync(c, db.Dialect, orgId, programId, null, db.Catalog, http.RequestAborted), http.RequestAborted);
        return TypedResults.Ok(program.Tiers!);
    }

    private static async Task<Ok<TierStatus>> StatusAsync(OwnerType ownerType, long ownerId,
        [Description("The program (default: the organization's default program).")] string? programId,
        HttpContext http, LedgerDatabase db, TimeProvider clock)
    {
        var orgId = http.User.Caller().OrgId;
        var program = QueryParameters.Long(programId, "programId");
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            await RequireOwnerAsync(c, db.Dialect, orgId, ownerType, ownerId, http.RequestAborted);
            var tiered = await TierReads.TieredProgramAsync(c, db.Dialect, orgId, program, null, db.Catalog, http.RequestAborted);
            return await TierReads.StatusAsync(c, db.Dialect, orgId, ownerType, ownerId, tiered, clock.GetUtcNow(), null, http.RequestAborted);
        }, http.RequestAborted));
    }

    private static async Task<Ok<IReadOnlyList<TierChangeView>>> HistoryAsync(OwnerType ownerType, long ownerId,
        [Description("Only this program's changes.")] string? programId,
        HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        var program = QueryParameters.Long(programId, "programId");
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            await RequireOwnerAsync(c, db.Dialect, orgId, ownerType, ownerId, http.RequestAborted);
            return await TierReads.HistoryAsync(c, db.Dialect, orgId, ownerType, ownerId, program, http.RequestAborted);
        }, http.RequestAborted));
    }

    /// <remarks>
    /// Like the expiry run, the evaluation is many transactions, so it goes through
    /// <see cref="IdempotentWriter.RunAsync"/>: the Idempotency-Key is claimed before it starts and
    /// the answer stored when it ends.
    /// </remarks>
    private static Task<OkAnswer<TierEvaluationResult>> EvaluateAsync(TierEvaluationRequest? request, HttpContext http, LedgerDatabase db,
        TimeProvider clock, IdempotentWriter writer)
    {
        var caller = http.User.Caller();
        var now = clock.GetUtcNow();
        var asOf = request?.AsOf ?? now;
        if (asOf > now) throw LedgerException.Invalid("asOf cannot be in the future: a tier is decided at the end of its period, not before.");
        return writer.RunOkAsync(http, request ?? new TierEvaluationRequest(),
            ct => TierEvaluation.RunAsync(db, caller.OrgId, asOf, now, caller.KeyId, ct));
    }

    private static async Task RequireOwnerAsync(System.Data.Common.DbConnection c, SqlDialect dialect, long orgId, OwnerType ownerType, long ownerId,
        CancellationToken ct)
    {
        if (ownerType == OwnerType.Customer) await CustomerDirectory.RequireAsync(c, dialect, orgId, ownerId, null, ct);
        else await GroupDirectory.RequireAsync(c, dialect, orgId, ownerId, null, ct);
    }
}
