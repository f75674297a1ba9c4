namespace LoyaltyLedger.Stores;

/// <summary>
/// What <see cref="StoreDirectory"/> needs of the process's catalog cache: stores and tills by code.
/// Declared here, beside the reads that use it, so that the cache above
/// (<c>Organizations.CatalogCache</c>, which implements it) depends on stores and not the reverse.
/// </summary>
public interface IStoreCache
{
    Store? Store(long orgId, string code);
    void SetStore(long orgId, Store store);
    Till? Till(long orgId, string code);
    void SetTill(long orgId, Till till);

    /// <summary>A store by id, once <see cref="SetStore"/> has seen it (a read naming an event's store needs no join).</summary>
    Store? StoreById(long orgId, long storeId);
    Till? TillById(long orgId, long tillId);
}
