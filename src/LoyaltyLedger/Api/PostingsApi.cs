using LoyaltyLedger.Ledger;
using LoyaltyLedger.Postings;
using LoyaltyLedger.Server.Hosting;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// The postings that move points: bills, redemptions, bulk allocations, named events, transfers.
/// Each is one transaction and honours the Idempotency-Key header.
/// </summary>
public static class PostingsApi
{
    public static RouteGroupBuilder MapPostingsApi(this RouteGroupBuilder v1)
    {
        var postings = v1.MapGroup("/").WithTags("Postings").RequireAuthorization(CallerClaims.Write);
        postings.MapPost("/transactions", (NewBill request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => PointsPostings.AddTransactionAsync(p, request)))
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status422UnprocessableEntity).WithName("AddTransaction").WithSummary("Posts a bill (TransactionAdd): earn-rule points and explicit awards.");
        postings.MapPost("/redemptions", (NewRedemption request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => PointsPostings.RedeemAsync(p, request)))
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status403Forbidden, StatusCodes.Status422UnprocessableEntity).WithName("Redeem").WithSummary("Redeems points or a currency (PointsRedemption), balance-checked, earliest expiry first.");
        postings.MapPost("/allocations", (NewBulkAllocation request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => PointsPostings.AllocateAsync(p, request)))
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status422UnprocessableEntity).WithName("BulkAllocate").WithSummary("Allocates points to many customers in one call (BulkAllocatePoints), all or nothing.");
        postings.MapPost("/events", (NewGenericEvent request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => PointsPostings.PostGenericEventAsync(p, request)))
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status422UnprocessableEntity).WithName("PostEvent").WithSummary("Posts a named event (GenericEvent) that awards points or currencies.");
        postings.MapPost("/transfers", (NewTransfer request, HttpContext http, IdempotentWriter writer) =>
                writer.PostCreatedAsync(http, request, p => PointsPostings.TransferAsync(p, request)))
            .Refuses(StatusCodes.Status404NotFound, StatusCodes.Status403Forbidden, StatusCodes.Status422UnprocessableEntity).WithName("Transfer").WithSummary("Transfers points between two customers or a customer and a group (PointsTransfer).");
        return v1;
    }
}
