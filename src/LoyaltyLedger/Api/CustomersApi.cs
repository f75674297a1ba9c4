using LoyaltyLedger.Customers;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>A customer as the native API shows it.</summary>
public sealed record CustomerView(
    long CustomerId,
    string? FirstName,
    string? LastName,
    string? ExternalId,
    string? Email,
    string? Mobile,
    string EntityType,
    DateTimeOffset RegisteredAt,
    IReadOnlyList<CustomerIdentifier> Identifiers,
    IReadOnlyList<string> AccountNumbers,
    long? RegistrationEventId = null);

public sealed record NewAccountNumber(string AccountNumber);

/// <summary>Customers: registration, identifiers, loyalty account numbers (cards), balances.</summary>
public static class CustomersApi
{
    public static RouteGroupBuilder MapCustomersApi(this RouteGroupBuilder v1)
    {
        var customers = v1.MapGroup("/customers").WithTags("Customers");
        customers.MapPost("/", RegisterAsync).Refuses(StatusCodes.Status404NotFound).WithName("RegisterCustomer")
            .WithSummary("Registers a customer: a CustomerRegistration event opens their wallets at zero.")
            .RequireAuthorization(CallerClaims.Write);
        customers.MapGet("/{customerId:long}", GetAsync).Refuses(StatusCodes.Status404NotFound).WithName("GetCustomer").WithSummary("One customer with identifiers and account numbers.");
        customers.MapGet("/lookup", LookupAsync).Refuses(StatusCodes.Status404NotFound, StatusCodes.Status409Conflict).WithName("LookupCustomer")
            .WithSummary("Finds a customer by identifierName (id, email, mobile, externalId), identifierValue and source.");
        customers.MapPost("/{customerId:long}/identifiers", AddIdentifierAsync).Refuses(StatusCodes.Status404NotFound).WithName("AddCustomerIdentifier")
            .WithSummary("Registers another identifier of the customer in a source.").RequireAuthorization(CallerClaims.Write);
        customers.MapPost("/{customerId:long}/accounts", AddAccountAsync).Refuses(StatusCodes.Status404NotFound).WithName("AddLoyaltyAccount")
            .WithSummary("Issues a loyalty account number (card) to the customer.").RequireAuthorization(CallerClaims.Write);
        customers.MapGet("/{customerId:long}/balances", BalancesAsync).Refuses(StatusCodes.Status404NotFound).ServedByReplicas().WithName("GetCustomerBalances")
            .WithSummary("The customer's balances per program, currency and category.");
        return v1;
    }

    private static Task<CreatedAnswer<CustomerView>> RegisterAsync(NewCustomer request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, async posting =>
        {
            var (customer, eventId) = await CustomerDirectory.RegisterAsync(posting, request);
            return await posting.WithConnectionAsync((c, tx) => ViewAsync(c, posting.Dialect, posting.OrgId, customer, tx, posting.Cancellation, eventId));
        });

    private static async Task<Ok<CustomerView>> GetAsync(long customerId, HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        return TypedResults.Ok(await db.ReadAsync(async c =>
            await ViewAsync(c, db.Dialect, orgId, await CustomerDirectory.RequireAsync(c, db.Dialect, orgId, customerId, null, http.RequestAborted), null, http.RequestAborted), http.RequestAborted));
    }

    private static async Task<Ok<CustomerView>> LookupAsync(string? identifierName, string? identifierValue, string? source, string? accountId,
        HttpContext http, LedgerDatabase db)
    {
        var kind = CustomerDirectory.CanonicalKind(identifierName) ?? throw LedgerException.Invalid("identifierName is one of id, email, mobile, externalId.");
        if (string.IsNullOrEmpty(identifierValue)) throw LedgerException.Invalid("identifierValue is required.");
        var canonicalSource = CustomerDirectory.CanonicalSource(source ?? "ALL") ?? throw LedgerException.Invalid($"Unknown source '{source}'.");
        var orgId = http.User.Caller().OrgId;
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            // Two customers under different accounts (or, with ALL, sources) may share an identifier:
            // answering with either would show one customer another's data, so the caller must choose.
            var customers = await CustomerDirectory.FindAllAsync(c, db.Dialect, orgId, canonicalSource, kind, identifierValue, accountId, limit: 2, null, http.RequestAborted);
            if (customers.Count > 1)
            {
                throw new LedgerException(ErrorCodes.AmbiguousIdentifier,
                    $"The {kind} '{identifierValue}' names more than one customer in source {canonicalSource}: pass accountId"
                    + (canonicalSource == "ALL" ? " or a source" : "") + " to choose one.", 409);
            }
            var customer = customers.FirstOrDefault() ?? throw LedgerException.NotFound("customer", identifierValue);
            return await ViewAsync(c, db.Dialect, orgId, customer, null, http.RequestAborted);
        }, http.RequestAborted));
    }

    private static Task<CreatedAnswer<CustomerView>> AddIdentifierAsync(long customerId, CustomerIdentifier request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, async posting =>
        {
            var customer = await CustomerDirectory.RequireAsync(posting, customerId);
            await CustomerDirectory.AddIdentifierAsync(posting, customerId, request);
            return await posting.WithConnectionAsync((c, tx) => ViewAsync(c, posting.Dialect, posting.OrgId, customer, tx, posting.Cancellation));
        });

    private static Task<CreatedAnswer<CustomerView>> AddAccountAsync(long customerId, NewAccountNumber request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, async posting =>
        {
            var customer = await CustomerDirectory.RequireAsync(posting, customerId);
            await CustomerDirectory.AddAccountNumberAsync(posting, customerId, request.AccountNumber);
            return await posting.WithConnectionAsync((c, tx) => ViewAsync(c, posting.Dialect, posting.OrgId, customer, tx, posting.Cancellation));
        });

    private static async Task<Ok<IReadOnlyList<BalanceView>>> BalancesAsync(long customerId, HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            await CustomerDirectory.RequireAsync(c, db.Dialect, orgId, customerId, null, http.RequestAborted);
            return await Balances.ForOwnerAsync(c, db.Dialect, orgId, OwnerType.Customer, customerId, http.RequestAborted);
        }, ConsistencyTokens.Read(http), http.RequestAborted));
    }

    private static async Task<CustomerView> ViewAsync(System.Data.Common.DbConnection c, SqlDialect dialect, long orgId, Customer customer,
        System.Data.Common.DbTransaction? tx, CancellationToken ct, long? registrationEventId = null) => new(
        customer.CustomerId, customer.FirstName, customer.LastName, customer.ExternalId, customer.Email, customer.Mobile,
        customer.EntityType, DateTimeOffset.FromUnixTimeMilliseconds(customer.CreatedAt),
        await CustomerDirectory.IdentifiersAsync(c, dialect, orgId, customer.CustomerId, tx, ct),
        (await CustomerDirectory.AccountNumbersAsync(c, dialect, orgId, customer.CustomerId, tx, ct)).ToList(),
        registrationEventId);
}
