using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Vault;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// The loyalty-vault API: a point-of-sale or web-shop client's view of an account (a customer's
/// card) per loyalty program (loyalty point definition), over the same ledger as the native API.
/// </summary>
public static class LoyaltyVaultApi
{
    /// <summary>Maps the vault routes and the native voucher admin routes they depend on.</summary>
    public static WebApplication MapLoyaltyVaultApi(this WebApplication app, RouteGroupBuilder v1)
    {
        v1.MapVouchersApi();
        var account = app.MapGroup("/api/v1.0/LoyaltyVault/Account/{accountNumber}").WithTags("LoyaltyVault")
            .RequireAuthorization(CallerClaims.Read);
        account.MapGet("/", GetAccountAsync).Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithName("VaultGetAccount")
            .WithSummary("Per program: the balance, the vouchers held (includeInactive=true for used and expired ones) and the vouchers the balance can buy.");
        account.MapGet("/LoyaltyPrograms/{loyaltyPointDefinitionId:long}/History", GetHistoryAsync).Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithSpecExample("vault-history.json", "The spec's example movement").WithName("VaultGetAccountHistory")
            .WithSummary("The account's point movements in one program, oldest first; optional from/to and offset/limit.");
        account.MapPost("/Transaction", PostTransactionAsync).Refuses(StatusCodes.Status404NotFound, StatusCodes.Status422UnprocessableEntity).WithName("VaultPostTransaction")
            .WithSummary("Posts a paid basket in one atomic write: loads, redemptions, voucher purchases and redemptions per program.")
            .RequireAuthorization(CallerClaims.Write);
        account.MapPost("/Transfer", PostTransferAsync).Refuses(StatusCodes.Status404NotFound, StatusCodes.Status422UnprocessableEntity).WithName("VaultTransfer")
            .WithSummary("Transfers points of one program to another account (a Transfer movement on each side).")
            .RequireAuthorization(CallerClaims.Write);
        return app;
    }

    private static async Task<Ok<VaultAccount>> GetAccountAsync(string accountNumber, string? includeInactive, HttpContext http, LedgerDatabase db, TimeProvider clock)
    {
        var inactive = ParseBool(includeInactive, "includeInactive");
        var orgId = http.User.Caller().OrgId;
        var nowMs = clock.GetUtcNow().ToUnixTimeMilliseconds();
        var consistency = ConsistencyTokens.Read(http);
        return TypedResults.Ok(await db.ReadAsync(c => VaultReads.AccountAsync(c, db.Dialect, orgId, accountNumber, inactive, nowMs, http.RequestAborted, db.Catalog), consistency, http.RequestAborted));
    }

    private static async Task<Ok<IReadOnlyList<VaultMovement>>> GetHistoryAsync(string accountNumber, long loyaltyPointDefinitionId,
        string? from, string? to, string? offset, string? limit, HttpContext http, LedgerDatabase db)
    {
        var query = new HistoryQuery(ParseTime(from, "from"), ParseTime(to, "to"), ParseInt(offset, "offset"), ParseInt(limit, "limit"));
        var orgId = http.User.Caller().OrgId;
        var consistency = ConsistencyTokens.Read(http);
        using var activity = LoyaltyLedger.Telemetry.LedgerTelemetry.Source.StartActivity("read vault-history");
        activity?.SetTag("ledger.org_id", orgId);
        return TypedResults.Ok(await VaultReads.HistoryAsync(db, orgId, accountNumber, loyaltyPointDefinitionId, query, consistency, http.RequestAborted, db.Catalog, db.Catalog));
    }

    private static Task<OkAnswer<VaultTransactionResult>> PostTransactionAsync(string accountNumber, VaultTransactionRequest request, HttpContext http, IdempotentWriter writer) =>
        writer.PostOkAsync(http, request, async posting =>
        {
            var (result, replayed) = await VaultTransactions.PostAsync(posting, accountNumber, request);
            if (replayed) http.Response.Headers[IdempotentWriter.ReplayedHeader] = "true";
            return result;
        });

    private static Task<OkAnswer<VaultTransferResult>> PostTransferAsync(string accountNumber, VaultTransferRequest request, HttpContext http, IdempotentWriter writer) =>
        writer.PostOkAsync(http, request, posting => VaultTransactions.TransferAsync(posting, accountNumber, request));

    private static bool ParseBool(string? value, string name) => QueryParameters.Bool(value, name) ?? false;

    private static int? ParseInt(string? value, string name) => QueryParameters.Int(value, name);

    private static DateTimeOffset? ParseTime(string? value, string name) => QueryParameters.Time(value, name, allowDate: true);
}
