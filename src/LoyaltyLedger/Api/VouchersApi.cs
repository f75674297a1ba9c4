using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Vault;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>Voucher definitions of a program: what its points buy through the loyalty-vault API.</summary>
public static class VouchersApi
{
    public static RouteGroupBuilder MapVouchersApi(this RouteGroupBuilder v1)
    {
        var vouchers = v1.MapGroup("/programs/{programId:long}/vouchers").WithTags("Vouchers");
        vouchers.MapGet("/", ListAsync).Refuses(StatusCodes.Status404NotFound).WithName("ListVouchers").WithSummary("The vouchers a program's points can buy.");
        vouchers.MapPost("/", CreateAsync).Refuses(StatusCodes.Status404NotFound).WithName("CreateVoucher")
            .WithSummary("Defines a voucher: name, price in points, validity in days, uses (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        return v1;
    }

    private static async Task<Ok<IReadOnlyList<VoucherDefinition>>> ListAsync(long programId, HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await db.ReadAsync(c => VoucherCatalog.ListAsync(c, db.Dialect, http.User.Caller().OrgId, programId, http.RequestAborted), http.RequestAborted));

    private static Task<CreatedAnswer<VoucherDefinition>> CreateAsync(long programId, NewVoucherDefinition request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, posting => VoucherCatalog.CreateAsync(posting, programId, request));
}
