namespace LoyaltyLedger.Programs;

/// <summary>
/// What <see cref="ProgramCatalog"/> needs of the process's catalog cache: an organization's programs
/// as last read. Declared here, beside the reads that use it, so that the cache above
/// (<c>Organizations.CatalogCache</c>, which implements it) depends on programs and not the reverse.
/// </summary>
public interface IProgramCache
{
    /// <summary>The organization's programs if read recently enough to be used (null otherwise).</summary>
    IReadOnlyList<LoyaltyProgram>? Programs(long orgId);

    /// <summary>
    /// Keeps a list read from the database; <paramref name="loadedAt"/> is
    /// <see cref="Ledger.ICatalogCache.Now"/> taken before the read, so a list older than a change this
    /// process made is not kept.
    /// </summary>
    void SetPrograms(long orgId, IReadOnlyList<LoyaltyProgram> programs, long loadedAt);

    /// <summary>
    /// The organization's programs: the cached list, or else <paramref name="load"/>'s, one load shared
    /// by every caller that misses the list at the same time. <paramref name="load"/> keeps what it
    /// reads and runs without any one caller's cancellation.
    /// </summary>
    Task<IReadOnlyList<LoyaltyProgram>> ProgramsAsync(long orgId, Func<Task<IReadOnlyList<LoyaltyProgram>>> load);
}
