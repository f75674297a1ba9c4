namespace LoyaltyLedger.Ledger;

/// <summary>
/// A process's cache of the reference data the posting rules read (an organization's programs,
/// currencies, stores and tills). The cache and its rules live above the kernel
/// (<c>Organizations.CatalogCache</c>); a <see cref="Posting"/> only carries it for those rules and
/// tells it when the posting changes an organization's programs.
/// </summary>
public interface ICatalogCache
{
    /// <summary>Forgets an organization's programs (a posting created a program or a currency).</summary>
    void InvalidatePrograms(long orgId);
}
