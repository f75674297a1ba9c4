using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>Stores and their tills.</summary>
public static class StoresApi
{
    public static RouteGroupBuilder MapStoresApi(this RouteGroupBuilder v1)
    {
        var stores = v1.MapGroup("/stores").WithTags("Stores");
        stores.MapGet("/", ListStoresAsync).WithName("ListStores").WithSummary("The organization's stores.");
        stores.MapPost("/", CreateStoreAsync).WithName("CreateStore").WithSummary("Creates a store (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        var tills = v1.MapGroup("/tills").WithTags("Stores");
        tills.MapGet("/", ListTillsAsync).WithName("ListTills").WithSummary("The organization's tills.");
        tills.MapPost("/", CreateTillAsync).Refuses(StatusCodes.Status404NotFound).WithName("CreateTill").WithSummary("Creates a till in a store (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        return v1;
    }

    private static async Task<Ok<IEnumerable<Store>>> ListStoresAsync(HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await db.ReadAsync(c => StoreDirectory.ListStoresAsync(c, http.User.Caller().OrgId, null, http.RequestAborted), http.RequestAborted));

    private static async Task<Ok<IEnumerable<Till>>> ListTillsAsync(HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await db.ReadAsync(c => StoreDirectory.ListTillsAsync(c, http.User.Caller().OrgId, null, http.RequestAborted), http.RequestAborted));

    private static Task<CreatedAnswer<Store>> CreateStoreAsync(NewStore request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, posting => StoreDirectory.CreateStoreAsync(posting, request));

    private static Task<CreatedAnswer<Till>> CreateTillAsync(NewTill request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, posting => StoreDirectory.CreateTillAsync(posting, request));
}
