using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Stores;

/// <summary>A shop. Bills are unique by number within a store.</summary>
public sealed class Store
{
    public long StoreId { get; set; }
    public string Code { get; set; } = "";
    public string Name { get; set; } = "";
    public string? Concept { get; set; }
}

/// <summary>A till (point of sale) in a store. It belongs to a concept, which programs are mapped to.</summary>
public sealed class Till
{
    public long TillId { get; set; }
    public long StoreId { get; set; }
    public string Code { get; set; } = "";
    public string Name { get; set; } = "";
    public string? Concept { get; set; }
}

public sealed record NewStore(string Code, string? Name = null, string? Concept = null);

public sealed record NewTill(string Code, string StoreCode, string? Name = null, string? Concept = null);

public static class StoreDirectory
{
    public static Task<IEnumerable<Store>> ListStoresAsync(DbConnection c, long orgId, DbTransaction? tx, CancellationToken ct) =>
        c.QueryAsync<Store>(new CommandDefinition("SELECT store_id, code, name, concept FROM stores WHERE org_id = @orgId ORDER BY code", new { orgId }, tx, cancellationToken: ct));

    public static Task<IEnumerable<Till>> ListTillsAsync(DbConnection c, long orgId, DbTransaction? tx, CancellationToken ct) =>
        c.QueryAsync<Till>(new CommandDefinition("SELECT till_id, store_id, code, name, concept FROM tills WHERE org_id = @orgId ORDER BY code", new { orgId }, tx, cancellationToken: ct));

    public static Task<Store?> FindStoreAsync(DbConnection c, long orgId, string code, DbTransaction? tx, CancellationToken ct) =>
        c.QuerySingleOrDefaultAsync<Store>(new CommandDefinition("SELECT store_id, code, name, concept FROM stores WHERE org_id = @orgId AND code = @code", new { orgId, code }, tx, cancellationToken: ct));

    public static Task<Till?> FindTillAsync(DbConnection c, long orgId, string code, DbTransaction? tx, CancellationToken ct) =>
        c.QuerySingleOrDefaultAsync<Till>(new CommandDefinition("SELECT till_id, store_id, code, name, concept FROM tills WHERE org_id = @orgId AND code = @code", new { orgId, code }, tx, cancellationToken: ct));

    /// <summary>
    /// The stores and tills of these ids, from <paramref name="cache"/> when it has them and from the
    /// database (once per process for each) when not; ids that name nothing are left out. Stores and
    /// tills never change once created, so a read that shows them (an event's store and till) can
    /// take them from memory instead of joining them on every request. The lookups run on
    /// <paramref name="c"/>, the read's connection, or, for a read that holds none (one through the
    /// read pipeline), on a read of their own: what the cache has needs no connection.
    /// </summary>
    public static async Task<(IReadOnlyDictionary<long, Store> Stores, IReadOnlyDictionary<long, Till> Tills)> ByIdsAsync(LedgerDatabase database,
        DbConnection? c, long orgId, IEnumerable<long> storeIds, IEnumerable<long> tillIds, IStoreCache? cache, DbTransaction? tx, CancellationToken ct)
    {
        var stores = new Dictionary<long, Store>();
        foreach (var id in storeIds.Distinct())
        {
            var store = cache?.StoreById(orgId, id);
            if (store is null)
            {
                store = await database.OnConnectionAsync(c, held => held.QuerySingleOrDefaultAsync<Store>(new CommandDefinition(
                    "SELECT store_id, code, name, concept FROM stores WHERE org_id = @orgId AND store_id = @id", new { orgId, id }, tx, cancellationToken: ct)), ct);
                if (store is null) continue;
                if (cache is not null) CommitHooks.AfterCommit(tx, () => cache.SetStore(orgId, store));
            }
            stores[id] = store;
        }
        var tills = new Dictionary<long, Till>();
        foreach (var id in tillIds.Distinct())
        {
            var till = cache?.TillById(orgId, id);
            if (till is null)
            {
                till = await database.OnConnectionAsync(c, held => held.QuerySingleOrDefaultAsync<Till>(new CommandDefinition(
                    "SELECT till_id, store_id, code, name, concept FROM tills WHERE org_id = @orgId AND till_id = @id", new { orgId, id }, tx, cancellationToken: ct)), ct);
                if (till is null) continue;
                if (cache is not null) CommitHooks.AfterCommit(tx, () => cache.SetTill(orgId, till));
            }
            tills[id] = till;
        }
        return (stores, tills);
    }

    /// <summary>Resolves the store and till a posting names; unknown codes are refused, never created on the fly.</summary>
    public static async Task<(Store? Store, Till? Till)> ResolveAsync(Posting posting, string? storeCode, string? tillCode)
    {
        // Stores and tills never change once created, so a cached one is always right; an unknown
        // code is looked up in the database every time.
        var cache = posting.CatalogForReads as IStoreCache;
        Store? store = null;
        Till? till = null;
        if (!string.IsNullOrEmpty(storeCode))
        {
            store = cache?.Store(posting.OrgId, storeCode);
            if (store is null)
            {
                var found = await posting.WithConnectionAsync((conn, tx) => FindStoreAsync(conn, posting.OrgId, storeCode, tx, posting.Cancellation))
                    ?? throw LedgerException.NotFound("store", storeCode);
                // Kept once the posting commits: a store created in its own transaction (or a batched
                // neighbour's) may yet be rolled back.
                if (cache is not null) CommitHooks.AfterCommit(posting.Transaction, () => cache.SetStore(posting.OrgId, found));
                store = found;
            }
        }
        if (!string.IsNullOrEmpty(tillCode))
        {
            till = cache?.Till(posting.OrgId, tillCode);
            if (till is null)
            {
                var found = await posting.WithConnectionAsync((conn, tx) => FindTillAsync(conn, posting.OrgId, tillCode, tx, posting.Cancellation))
                    ?? throw LedgerException.NotFound("till", tillCode);
                if (cache is not null) CommitHooks.AfterCommit(posting.Transaction, () => cache.SetTill(posting.OrgId, found));
                till = found;
            }
            if (store is null)
                store = (await posting.WithConnectionAsync((conn, tx) => ListStoresAsync(conn, posting.OrgId, tx, posting.Cancellation))).First(s => s.StoreId == till.StoreId);
            else if (till.StoreId != store.StoreId)
                throw LedgerException.Invalid($"Till '{tillCode}' does not belong to store '{storeCode}'.");
        }
        return (store, till);
    }

    public static async Task<Store> CreateStoreAsync(Posting posting, NewStore request)
    {
        posting.ChangeCatalog();
        ValidateCode(request.Code, "store");
        var storeId = await posting.NextIdAsync("store");
        try
        {
            await posting.ExecuteAsync(
                "INSERT INTO stores (org_id, store_id, code, name, concept, created_at) VALUES (@org, @storeId, @code, @name, @concept, @now)",
                new { org = posting.OrgId, storeId, code = request.Code, name = request.Name ?? request.Code, concept = request.Concept, now = posting.NowMs });
        }
        catch (DbException ex) when (posting.Dialect.IsUniqueViolation(ex))
        {
            throw new LedgerException(ErrorCodes.AlreadyExists, $"Store '{request.Code}' already exists.", 409);
        }
        return new Store { StoreId = storeId, Code = request.Code, Name = request.Name ?? request.Code, Concept = request.Concept };
    }

    public static async Task<Till> CreateTillAsync(Posting posting, NewTill request)
    {
        posting.ChangeCatalog();
        ValidateCode(request.Code, "till");
        var store = await posting.WithConnectionAsync((conn, tx) => FindStoreAsync(conn, posting.OrgId, request.StoreCode, tx, posting.Cancellation))
            ?? throw LedgerException.NotFound("store", request.StoreCode);
        var tillId = await posting.NextIdAsync("till");
        var concept = request.Concept ?? store.Concept;
        try
        {
            await posting.ExecuteAsync(
                "INSERT INTO tills (org_id, till_id, store_id, code, name, concept, created_at) VALUES (@org, @tillId, @storeId, @code, @name, @concept, @now)",
                new { org = posting.OrgId, tillId, storeId = store.StoreId, code = request.Code, name = request.Name ?? request.Code, concept, now = posting.NowMs });
        }
        catch (DbException ex) when (posting.Dialect.IsUniqueViolation(ex))
        {
            throw new LedgerException(ErrorCodes.AlreadyExists, $"Till '{request.Code}' already exists.", 409);
        }
        return new Till { TillId = tillId, StoreId = store.StoreId, Code = request.Code, Name = request.Name ?? request.Code, Concept = concept };
    }

    private static void ValidateCode(string? code, string what)
    {
        if (string.IsNullOrWhiteSpace(code) || code.Length > 100)
            throw LedgerException.Invalid($"A {what} needs a code of 1 to 100 characters.");
    }
}
