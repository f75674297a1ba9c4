using System.Diagnostics;

namespace LoyaltyLedger.Ledger;

/// <summary>
/// A process's cache of the reference data the posting rules read (an organization's programs,
/// currencies, stores and tills). The cache and its rules live above the kernel
/// (<c>Organizations.CatalogCache</c>); a <see cref="Posting"/> only carries it for those rules and
/// tells it when the posting changes an organization's programs. The modules that read through it
/// declare what they need of it themselves (<c>Programs.IProgramCache</c>, <c>Stores.IStoreCache</c>),
/// so that each arrow points from the cache to them.
/// </summary>
public interface ICatalogCache
{
    /// <summary>Forgets an organization's programs (a posting created a program or a currency).</summary>
    void InvalidatePrograms(long orgId);

    /// <summary>
    /// A timestamp to pass to the cache's setters, taken before the database read: a change this
    /// process makes while the read is under way then still wins, since the read is older than the change.
    /// </summary>
    static long Now() => Stopwatch.GetTimestamp();
}
