using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;

namespace LoyaltyLedger.Organizations;

/// <summary>
/// The reference data every posting and read looks up (an organization's programs, its stores and
/// tills, its API keys), held in memory by one server process so that a request does not spend
/// round trips on it.
/// </summary>
/// <remarks>
/// Why this is safe for a ledger:
/// <list type="bullet">
/// <item>Stores and tills are never changed or deleted once created, so a cached one is never wrong
/// and is kept for the life of the process; an unknown code always falls through to the database.</item>
/// <item>A program's rules (earn rate, expiry, negative balances, return window) are never changed
/// once created either. What can change is which program is the default, the list of alternate
/// currencies and the tier policy. The list is reloaded after <see cref="ProgramsTtl"/>, and at once in
/// this process when this process changes it; a program or currency that is asked for by id or name and
/// not found in the cached list is looked up in the database before it is refused. So another server
/// process sees a new default program or tier policy, or earns a new currency by rule, at most
/// <see cref="ProgramsTtl"/> late (the cluster test measures it across two server processes).</item>
/// <item>An API key is re-read after <see cref="KeysTtl"/>, and at once in this process when this
/// process revokes or rotates it; so a key revoked through another server process still works there for
/// at most <see cref="KeysTtl"/>.</item>
/// </list>
/// </remarks>
public sealed class CatalogCache : ICatalogCache, IProgramCache, IStoreCache
{
    public static readonly TimeSpan ProgramsTtl = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan KeysTtl = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<long, (IReadOnlyList<LoyaltyProgram> Programs, long LoadedAt)> _programs = new();
    private readonly ConcurrentDictionary<(long OrgId, string Code), Store> _stores = new();
    private readonly ConcurrentDictionary<(long OrgId, string Code), Till> _tills = new();
    private readonly ConcurrentDictionary<(long OrgId, long StoreId), Store> _storesById = new();
    private readonly ConcurrentDictionary<(long OrgId, long TillId), Till> _tillsById = new();
    private readonly ConcurrentDictionary<string, (CachedKey Key, long LoadedAt)> _keys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, long> _programsChangedAt = new();
    private readonly ConcurrentDictionary<string, long> _keysChangedAt = new(StringComparer.Ordinal);

    private readonly SharedLoads<long, IReadOnlyList<LoyaltyProgram>> _programLoads = new();
    private readonly SharedLoads<string, CachedKey> _keyLoads = new();

    /// <summary>
    /// One load at a time per entry: the callers that find an entry missing or stale while a load of it
    /// is under way wait for that load instead of each reading their own. When an entry expires under
    /// load (every second), every request that comes before the new one is read would otherwise read
    /// it too: at 32 clients, a dozen or more reads a second queueing for the read slots.
    /// </summary>
    private sealed class SharedLoads<TKey, TValue> where TKey : notnull
    {
        private readonly ConcurrentDictionary<TKey, Lazy<Task<TValue>>> _running = new();

        public async Task<TValue> LoadAsync(TKey key, Func<Task<TValue>> load)
        {
            var shared = _running.GetOrAdd(key, static (_, load) => new Lazy<Task<TValue>>(load), load);
            try
            {
                return await shared.Value;
            }
            finally
            {
                // Only this load's entry: a later load of the same key may already have taken its place.
                _running.TryRemove(new KeyValuePair<TKey, Lazy<Task<TValue>>>(key, shared));
            }
        }

        /// <summary>
        /// Leaves a load under way to the callers already waiting for it: it may have read the entry
        /// before this process changed it, so a caller that comes after the change starts a load of its own.
        /// </summary>
        public void Forget(TKey key) => _running.TryRemove(key, out _);
    }

    /// <summary>
    /// The organization's programs: the cached list, or else <paramref name="load"/>'s, one load shared
    /// by every caller that misses the list at the same time (<see cref="SharedLoads{TKey, TValue}"/>).
    /// <paramref name="load"/> keeps what it reads (<see cref="SetPrograms"/>) and is run without the
    /// caller's cancellation, since other callers may wait for it.
    /// </summary>
    public async Task<IReadOnlyList<LoyaltyProgram>> ProgramsAsync(long orgId, Func<Task<IReadOnlyList<LoyaltyProgram>>> load) =>
        Programs(orgId) ?? await _programLoads.LoadAsync(orgId, load);

    /// <summary>A key as last read, or else <paramref name="load"/>'s, one load shared as for <see cref="ProgramsAsync"/>.</summary>
    public async Task<CachedKey> KeyAsync(string keyId, Func<Task<CachedKey>> load) =>
        Key(keyId) ?? await _keyLoads.LoadAsync(keyId, load);

    /// <summary>The organization's programs if loaded within <see cref="ProgramsTtl"/>.</summary>
    public IReadOnlyList<LoyaltyProgram>? Programs(long orgId) =>
        _programs.TryGetValue(orgId, out var entry) && Fresh(entry.LoadedAt, ProgramsTtl) ? entry.Programs : null;

    public void SetPrograms(long orgId, IReadOnlyList<LoyaltyProgram> programs, long loadedAt)
    {
        // A read that started before this process's last change may have seen the old list: not kept.
        if (_programsChangedAt.TryGetValue(orgId, out var changedAt) && loadedAt <= changedAt) return;
        _programs[orgId] = (programs, loadedAt);
    }

    /// <summary>Forgets an organization's programs (this process created a program or a currency).</summary>
    public void InvalidatePrograms(long orgId)
    {
        _programsChangedAt[orgId] = Now();
        _programs.TryRemove(orgId, out _);
        _programLoads.Forget(orgId);
    }

    public Store? Store(long orgId, string code) => _stores.GetValueOrDefault((orgId, code));
    public Store? StoreById(long orgId, long storeId) => _storesById.GetValueOrDefault((orgId, storeId));

    public void SetStore(long orgId, Store store)
    {
        _stores[(orgId, store.Code)] = store;
        _storesById[(orgId, store.StoreId)] = store;
    }

    public Till? Till(long orgId, string code) => _tills.GetValueOrDefault((orgId, code));
    public Till? TillById(long orgId, long tillId) => _tillsById.GetValueOrDefault((orgId, tillId));

    public void SetTill(long orgId, Till till)
    {
        _tills[(orgId, till.Code)] = till;
        _tillsById[(orgId, till.TillId)] = till;
    }

    /// <summary>A key as last read, if read within <see cref="KeysTtl"/>.</summary>
    public CachedKey? Key(string keyId)
    {
        var key = _keys.TryGetValue(keyId, out var entry) && Fresh(entry.LoadedAt, KeysTtl) ? entry.Key : null;
        Telemetry.LedgerTelemetry.KeyCacheLookups.Add(1, new KeyValuePair<string, object?>("hit", key is not null));
        return key;
    }

    public void SetKey(string keyId, CachedKey key, long loadedAt)
    {
        if (_keysChangedAt.TryGetValue(keyId, out var changedAt) && loadedAt <= changedAt) return;
        // A bounded cache: clients sending random key ids must not grow it without limit.
        if (_keys.Count > 100_000) _keys.Clear();
        _keys[keyId] = (key, loadedAt);
    }

    /// <summary>Forgets a key (this process revoked or rotated it).</summary>
    public void InvalidateKey(string keyId)
    {
        _keysChangedAt[keyId] = Now();
        _keys.TryRemove(keyId, out _);
        _keyLoads.Forget(keyId);
    }

    /// <summary>
    /// A timestamp to pass to the setters, taken before the database read: a change this process
    /// makes while the read is under way then still wins, since the read is older than the change.
    /// </summary>
    public static long Now() => ICatalogCache.Now();

    private static bool Fresh(long loadedAt, TimeSpan ttl) => Stopwatch.GetElapsedTime(loadedAt) < ttl;
}

/// <summary>What authentication needs of a key: its organization, the hash of its secret, its role (null when the key is unknown or revoked).</summary>
public sealed record CachedKey(long OrgId, string? SecretHash, string? Role);

/// <summary>
/// Where the catalog cache is found: one per database handle, so one per server process (storage
/// holds none of it: the cache is attached to the handle here, above the kernel).
/// </summary>
public static class CatalogCaches
{
    private static readonly ConditionalWeakTable<LedgerDatabase, CatalogCache> ByDatabase = new();

    extension(LedgerDatabase database)
    {
        /// <summary>Programs, stores, tills and API keys as this process last read them (see <see cref="CatalogCache"/>).</summary>
        public CatalogCache Catalog => ByDatabase.GetValue(database, static _ => new CatalogCache());
    }
}
