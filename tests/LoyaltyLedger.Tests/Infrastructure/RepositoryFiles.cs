namespace LoyaltyLedger.Tests.Infrastructure;

/// <summary>
/// The repository's own files that tests read or check (its documents, the sources, the generated
/// client), found from the test binaries up, wherever the build put them.
/// </summary>
public static class RepositoryFiles
{
    /// <summary>The directory holding LoyaltyLedger.slnx, above the test binaries.</summary>
    public static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "LoyaltyLedger.slnx"))) return dir.FullName;
        }
        throw new DirectoryNotFoundException("The repository root (LoyaltyLedger.slnx) was not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The path of a file in the repository, from its parts: <c>PathOf("docs", "indexes.md")</c>.</summary>
    public static string PathOf(params string[] parts) => Path.Combine([Root(), .. parts]);
}
