using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;

namespace LoyaltyLedger.Customers;

/// <summary>A loyalty customer. Their points live in wallets, one per program x currency x category.</summary>
public sealed class Customer
{
    public long CustomerId { get; set; }
    public string? FirstName { get; set; }
    public string? LastName { get; set; }
    public string? ExternalId { get; set; }
    public string? Email { get; set; }
    public string? Mobile { get; set; }
    public string EntityType { get; set; } = "CUSTOMER";
    public long CreatedAt { get; set; }
}

/// <summary>
/// How a client names a customer: an identifier of a kind (id, email, mobile, externalId) registered
/// in a source (INSTORE, MARTJACK, WECHAT...), and for sources with several accounts an account id.
/// </summary>
public sealed record CustomerIdentifier(string Source, string Type, string Value, string? AccountId = null);

public sealed record NewCustomer(
    long? CustomerId = null,
    string? FirstName = null,
    string? LastName = null,
    string? ExternalId = null,
    string? Email = null,
    string? Mobile = null,
    string? Source = null,
    string? AccountId = null,
    string? EntityType = null,
    IReadOnlyList<CustomerIdentifier>? Identifiers = null,
    IReadOnlyList<string>? AccountNumbers = null,
    string? StoreCode = null,
    string? TillCode = null);

public static class CustomerDirectory
{
    /// <summary>The identifier kinds both read APIs accept, in their canonical spelling.</summary>
    public static readonly IReadOnlyList<string> IdentifierKinds = ["id", "email", "mobile", "externalId"];

    /// <summary>The sources the points-ledger spec names; ALL matches a customer registered in any source.</summary>
    public static readonly IReadOnlyList<string> Sources =
        ["INSTORE", "MARTJACK", "WECHAT", "FACEBOOK", "WEB_ENGAGE", "TMALL", "TAOBAO", "JD", "ECOMMERCE", "WEBSITE", "LINE", "ALL"];

    public static string? CanonicalKind(string? kind) =>
        IdentifierKinds.FirstOrDefault(k => string.Equals(k, kind, StringComparison.OrdinalIgnoreCase));

    public static string? CanonicalSource(string? source) =>
        Sources.FirstOrDefault(s => string.Equals(s, source, StringComparison.OrdinalIgnoreCase));

    private const string Columns = "customer_id, first_name, last_name, external_id, email, mobile, entity_type, created_at";

    public static Task<Customer?> GetAsync(DbConnection c, SqlDialect dialect, long orgId, long customerId, DbTransaction? tx, CancellationToken ct) =>
        KeptReads.QuerySingleOrDefaultAsync<Customer>(c, dialect, $"SELECT {Columns} FROM customers WHERE org_id = @orgId AND customer_id = @customerId",
            new { orgId, customerId }, tx, ct);

    public static async Task<Customer> RequireAsync(DbConnection c, SqlDialect dialect, long orgId, long customerId, DbTransaction? tx, CancellationToken ct) =>
        await GetAsync(c, dialect, orgId, customerId, tx, ct) ?? throw LedgerException.NotFound("customer", customerId);

    /// <summary>The customer a posting names, as its transaction sees it; refused when there is none.</summary>
    public static async Task<Customer> RequireAsync(Posting posting, long customerId) =>
        await posting.QuerySingleOrDefaultAsync<Customer>($"SELECT {Columns} FROM customers WHERE org_id = @orgId AND customer_id = @customerId",
            new { orgId = posting.OrgId, customerId })
        ?? throw LedgerException.NotFound("customer", customerId);

    /// <summary>
    /// Adds the check that the customer a posting names exists to <paramref name="batch"/>, to ride
    /// in a round trip the posting makes anyway; <see cref="Require(BatchResults, int, long)"/> reads it.
    /// </summary>
    public static int AddRequire(StatementBatch batch, long orgId, long customerId) =>
        batch.Query("SELECT customer_id FROM customers WHERE org_id = @orgId AND customer_id = @customerId", new { orgId, customerId });

    /// <summary>
    /// Refuses the posting when the check <see cref="AddRequire"/> added found no customer (or another
    /// statement that returns no row exactly when there is none, such as a pooling group's lookup).
    /// </summary>
    public static void Require(BatchResults results, int check, long customerId)
    {
        if (results.Rows(check).Count == 0) throw LedgerException.NotFound("customer", customerId);
    }

    /// <summary>Finds a customer by an identifier in a source (ALL: any source). Null when nobody matches.</summary>
    public static async Task<Customer?> FindAsync(DbConnection c, SqlDialect dialect, long orgId, string source, string kind, string value, string? accountId,
        DbTransaction? tx, CancellationToken ct) =>
        (await FindAllAsync(c, dialect, orgId, source, kind, value, accountId, 1, tx, ct)).FirstOrDefault();

    /// <summary>
    /// The customers an identifier names in a source (ALL: any source), at most <paramref name="limit"/>,
    /// in id order. More than one means the identifier alone is ambiguous there: customers of different
    /// accounts of the source (or, with ALL, of different sources) share it.
    /// </summary>
    public static async Task<IReadOnlyList<Customer>> FindAllAsync(DbConnection c, SqlDialect dialect, long orgId, string source, string kind, string value,
        string? accountId, int limit, DbTransaction? tx, CancellationToken ct)
    {
        var sql = $"""
            SELECT {Columns} FROM customers WHERE org_id = @orgId AND customer_id IN ({IdentifiedSql(source, accountId)})
            ORDER BY customer_id
            LIMIT @limit
            """;
        return await KeptReads.QueryAsync<Customer>(c, dialect, sql, new { orgId, kind, value, source, accountId, limit }, tx, ct);
    }

    /// <summary>
    /// The ids of the customers an identifier names (what <see cref="FindAllAsync"/> matches), as a
    /// subquery on the parameters <c>@orgId</c>, <c>@kind</c>, <c>@value</c>, <c>@source</c> and
    /// <c>@accountId</c>: a read can name its customer in the same statement.
    /// </summary>
    public static string IdentifiedSql(string source, string? accountId) => $"""
        SELECT customer_id FROM customer_identifiers
        WHERE org_id = @orgId AND kind = @kind AND value = @value
        {(source == "ALL" ? "" : "AND source = @source")}
        {(string.IsNullOrEmpty(accountId) ? "" : "AND account_id = @accountId")}
        """;

    // A settable row class: Dapper cannot infer a constructor when SQLite reports a NULL column as untyped.
    private sealed class IdentifierRow
    {
        public string Source { get; set; } = "";
        public string Kind { get; set; } = "";
        public string Value { get; set; } = "";
        public string AccountId { get; set; } = "";
    }

    public static async Task<IReadOnlyList<CustomerIdentifier>> IdentifiersAsync(DbConnection c, SqlDialect dialect, long orgId, long customerId, DbTransaction? tx,
        CancellationToken ct)
    {
        // Sorted here, not in SQL: an ORDER BY on the primary key's columns led SQLite to walk the whole
        // organization's identifiers by that key (25 ms at 20,000 customers) instead of the customer's few
        // through ix_customer_identifiers_customer.
        var rows = await KeptReads.QueryAsync<IdentifierRow>(c, dialect,
            "SELECT source, kind, value, account_id FROM customer_identifiers WHERE org_id = @orgId AND customer_id = @customerId",
            new { orgId, customerId }, tx, ct);
        return rows.OrderBy(r => r.Source, StringComparer.Ordinal).ThenBy(r => r.Kind, StringComparer.Ordinal).ThenBy(r => r.Value, StringComparer.Ordinal)
            .Select(r => new CustomerIdentifier(r.Source, r.Kind, r.Value, r.AccountId.Length == 0 ? null : r.AccountId)).ToList();
    }

    /// <remarks>Sorted here for the same reason as <see cref="IdentifiersAsync"/> (the accounts' primary key starts with the number).</remarks>
    public static async Task<IEnumerable<string>> AccountNumbersAsync(DbConnection c, SqlDialect dialect, long orgId, long customerId, DbTransaction? tx,
        CancellationToken ct) =>
        (await KeptReads.QueryAsync<string>(c, dialect, "SELECT account_number FROM loyalty_accounts WHERE org_id = @orgId AND customer_id = @customerId",
            new { orgId, customerId }, tx, ct)).Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// Registers a customer and posts a CustomerRegistration event that opens, at zero, a wallet for
    /// the points of every program and for each of its alternate currencies.
    /// </summary>
    public static async Task<(Customer Customer, long EventId)> RegisterAsync(Posting posting, NewCustomer request)
    {
        var source = CanonicalSource(request.Source ?? "INSTORE");
        if (source is null || source == "ALL") throw LedgerException.Invalid($"Unknown source '{request.Source}'.");
        var entityType = (request.EntityType ?? "CUSTOMER").ToUpperInvariant();
        if (entityType is not ("CUSTOMER" or "FLEET")) throw LedgerException.Invalid("entityType is CUSTOMER or FLEET.");
        if (request.Email is { Length: > 200 } || request.Mobile is { Length: > 50 } || request.ExternalId is { Length: > 100 })
            throw LedgerException.Invalid("An identifier is too long.");

        long customerId;
        if (request.CustomerId is { } explicitId)
        {
            if (explicitId <= 0) throw LedgerException.Invalid("customerId must be positive.");
            if (await posting.WithConnectionAsync((conn, tx) => GetAsync(conn, posting.Dialect, posting.OrgId, explicitId, tx, posting.Cancellation)) is not null)
                throw new LedgerException(ErrorCodes.AlreadyExists, $"Customer {explicitId} already exists.", 409);
            customerId = explicitId;
            await posting.ClaimIdAsync("customer", customerId);
        }
        else
        {
            customerId = await posting.NextIdAsync("customer");
        }

        var (store, till) = await StoreDirectory.ResolveAsync(posting, request.StoreCode, request.TillCode);
        await posting.ExecuteAsync(
            $"""
            INSERT INTO customers (org_id, {Columns})
            VALUES (@org, @customerId, @firstName, @lastName, @externalId, @email, @mobile, @entityType, @now)
            """,
            new
            {
                org = posting.OrgId, customerId, firstName = request.FirstName, lastName = request.LastName,
                externalId = request.ExternalId, email = request.Email, mobile = request.Mobile, entityType, now = posting.NowMs,
            });

        var identifiers = new List<CustomerIdentifier> { new(source, "id", customerId.ToString(System.Globalization.CultureInfo.InvariantCulture), request.AccountId) };
        if (!string.IsNullOrEmpty(request.Email)) identifiers.Add(new(source, "email", request.Email, request.AccountId));
        if (!string.IsNullOrEmpty(request.Mobile)) identifiers.Add(new(source, "mobile", request.Mobile, request.AccountId));
        if (!string.IsNullOrEmpty(request.ExternalId)) identifiers.Add(new(source, "externalId", request.ExternalId, request.AccountId));
        identifiers.AddRange(request.Identifiers ?? []);
        foreach (var identifier in identifiers)
            await AddIdentifierAsync(posting, customerId, identifier);
        foreach (var accountNumber in request.AccountNumbers ?? [])
            await AddAccountNumberAsync(posting, customerId, accountNumber);

        var programs = await posting.WithConnectionAsync((conn, tx) => ProgramCatalog.ListAsync(conn, posting.Dialect, posting.OrgId, tx, posting.Cancellation));
        var defaultProgram = programs.FirstOrDefault(p => p.IsDefault) ?? programs.FirstOrDefault();
        // The new wallets are locked before the event is written, as every posting locks its wallets
        // before it writes: `renumber` takes the wallets' table lock first and then the events', so a
        // registration holding the events' while it waited for the wallets' would deadlock with it.
        await posting.LockWalletsAsync(WalletKeys(OwnerType.Customer, customerId, programs));
        var eventId = await posting.InsertEventAsync(new NewEvent(OwnerType.Customer, customerId, customerId,
            EventNames.CustomerRegistration, SourceProgramId: defaultProgram?.ProgramId, StoreId: store?.StoreId, TillId: till?.TillId,
            StoreCode: store?.Code, TillCode: till?.Code));
        await OpenWalletsAsync(posting, eventId, OwnerType.Customer, customerId, programs);

        var customer = await posting.WithConnectionAsync((conn, tx) => GetAsync(conn, posting.Dialect, posting.OrgId, customerId, tx, posting.Cancellation));
        return (customer!, eventId);
    }

    /// <summary>The regular wallets an owner has in <paramref name="programs"/>: each program's points and each of its currencies.</summary>
    private static List<WalletKey> WalletKeys(OwnerType ownerType, long ownerId, IEnumerable<LoyaltyProgram> programs) =>
        programs.SelectMany(p => new[] { new WalletKey(ownerType, ownerId, p.ProgramId, WalletKey.PlainPoints, PointCategory.Regular) }
            .Concat(p.Currencies.Select(c => new WalletKey(ownerType, ownerId, p.ProgramId, c.CurrencyId, PointCategory.Regular)))).ToList();

    /// <summary>Opening-balance lines of zero for a program's points and each of its currencies.</summary>
    public static async Task OpenWalletsAsync(Posting posting, long eventId, OwnerType ownerType, long ownerId, IEnumerable<LoyaltyProgram> programs)
    {
        var keys = WalletKeys(ownerType, ownerId, programs);
        await posting.LockWalletsAsync(keys);
        foreach (var key in keys)
            await posting.OpenAsync(eventId, key);
    }

    public static async Task AddIdentifierAsync(Posting posting, long customerId, CustomerIdentifier identifier)
    {
        var kind = CanonicalKind(identifier.Type) ?? throw LedgerException.Invalid($"Unknown identifier type '{identifier.Type}' (id, email, mobile, externalId).");
        var source = CanonicalSource(identifier.Source);
        if (source is null || source == "ALL") throw LedgerException.Invalid($"Unknown source '{identifier.Source}'.");
        if (string.IsNullOrWhiteSpace(identifier.Value) || identifier.Value.Length > 200) throw LedgerException.Invalid("An identifier needs a value of 1 to 200 characters.");
        try
        {
            await posting.ExecuteAsync(
                "INSERT INTO customer_identifiers (org_id, source, account_id, kind, value, customer_id) VALUES (@org, @source, @accountId, @kind, @value, @customerId)",
                new { org = posting.OrgId, source, accountId = identifier.AccountId ?? "", kind, value = identifier.Value, customerId });
        }
        catch (DbException ex) when (posting.Dialect.IsUniqueViolation(ex))
        {
            throw new LedgerException(ErrorCodes.AlreadyExists, $"The {kind} '{identifier.Value}' is already registered in {source}.", 409);
        }
    }

    public static async Task AddAccountNumberAsync(Posting posting, long customerId, string accountNumber)
    {
        if (string.IsNullOrWhiteSpace(accountNumber) || accountNumber.Length > 64 || accountNumber.Any(char.IsWhiteSpace) || accountNumber.Contains('/', StringComparison.Ordinal))
            throw LedgerException.Invalid("An account number is 1 to 64 characters without spaces or slashes.");
        try
        {
            await posting.ExecuteAsync(
                "INSERT INTO loyalty_accounts (org_id, account_number, customer_id, status, created_at) VALUES (@org, @accountNumber, @customerId, 'ACTIVE', @now)",
                new { org = posting.OrgId, accountNumber, customerId, now = posting.NowMs });
        }
        catch (DbException ex) when (posting.Dialect.IsUniqueViolation(ex))
        {
            throw new LedgerException(ErrorCodes.AlreadyExists, $"Account number '{accountNumber}' is already issued.", 409);
        }
    }
}
