using System.Globalization;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Ledger;

namespace LoyaltyLedger.PointsLedger;

/// <summary>Whose ledger is read: one customer's, or a user group's pooled wallet (type=USERGROUP2).</summary>
public enum LedgerSubject { Customer, UserGroup }

/// <summary>
/// Which ledger lines a query keeps, after the behaviour table of includeAlternateCurrencies x
/// pointCategoryType x excludePointCategories (and alternateCurrencyNames) has been applied.
/// </summary>
public enum CurrencyScope
{
    /// <summary>Plain points only (includeAlternateCurrencies=false, no currency names).</summary>
    PointsOnly,
    /// <summary>Plain points and every alternate currency.</summary>
    PointsAndCurrencies,
    /// <summary>Alternate currencies only (excludePointCategories=true).</summary>
    CurrenciesOnly,
    /// <summary>The currencies named in alternateCurrencyNames only.</summary>
    NamedCurrencies,
}

/// <summary>A validated points-ledger query, in the ledger's terms.</summary>
public sealed record LedgerQuery
{
    public const int DefaultLimit = 10;
    public const int MaxLimit = 100;
    public static readonly TimeSpan MaxWindow = TimeSpan.FromDays(90);

    public LedgerSubject Subject { get; init; }
    public required string IdentifierName { get; init; }
    public required string IdentifierValue { get; init; }
    public required string Source { get; init; }
    public string? AccountId { get; init; }
    public string? TillId { get; init; }
    public long? ProgramId { get; init; }
    public bool IncludeTillConceptEvents { get; init; }
    public EntryType? EntryType { get; init; }
    /// <summary>Null: every category.</summary>
    public PointCategory? Category { get; init; }
    public CurrencyScope Currencies { get; init; }
    public IReadOnlyList<string> CurrencyNames { get; init; } = [];
    /// <summary>Inclusive bounds in Unix ms; both null when the whole history is read.</summary>
    public long? FromMs { get; init; }
    public long? ToMs { get; init; }
    public int Limit { get; init; } = DefaultLimit;
    /// <summary>The page number (the spec's offset), from 0.</summary>
    public int Page { get; init; }
    public bool Descending { get; init; } = true;
    public string? Role { get; init; }
    public IReadOnlyList<string> Warnings { get; init; } = [];

    public bool IsDateBounded => FromMs is not null || ToMs is not null;
}

/// <summary>
/// Turns the wire's query string into a <see cref="LedgerQuery"/>, refusing with the spec's codes.
/// Every rule of the spec's parameter table is here, so it reads as the table does.
/// </summary>
public static class LedgerQueryParser
{
    /// <summary>The spec's one date format, <c>YYYY-MM-DDThh:mm:ss</c>, read as UTC.</summary>
    private const string DateFormat = "yyyy-MM-dd'T'HH:mm:ss";

    /// <param name="query">Parameter name to value, names matched case-insensitively by the caller.</param>
    public static LedgerQuery Parse(Func<string, string?> query)
    {
        var warnings = new List<string>();

        var subject = ParseType(query("type"));
        var identifierName = Required(query, "identifierName");
        var identifierValue = Required(query, "identifierValue");
        var source = Required(query, "source");
        if (CustomerDirectory.CanonicalSource(source) is not { } canonicalSource)
            throw new PointsLedgerException(PointsLedgerErrors.InvalidIdentifier, $"Lookup, Invalid identifier passed: unknown source '{source}'", 400);

        var canonicalName = subject == LedgerSubject.Customer ? CustomerDirectory.CanonicalKind(identifierName) : CanonicalGroupIdentifier(identifierName);
        if (canonicalName is null)
        {
            var expected = subject == LedgerSubject.Customer ? "id, email, mobile, externalId" : "groupId, id, externalId, primaryUserId";
            throw new PointsLedgerException(PointsLedgerErrors.InvalidIdentifier, $"Lookup, Invalid identifier passed: identifierName is one of {expected}", 400);
        }
        if (canonicalName is "id" or "groupId" or "primaryUserId" && !long.TryParse(identifierValue, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            throw new PointsLedgerException(PointsLedgerErrors.InvalidUserId, "Invalid userId passed in request", 400);

        // The spec spells the parameter acountId; clients that correct the spelling are served too.
        var accountId = Optional(query("acountId"));
        var correctlySpelled = Optional(query("accountId"));
        if (accountId is not null && correctlySpelled is not null && accountId != correctlySpelled)
            throw PointsLedgerException.Combination("acountId and accountId name different accounts");
        accountId ??= correctlySpelled;

        var limit = ParseInt(query, "limit") ?? LedgerQuery.DefaultLimit;
        if (limit > LedgerQuery.MaxLimit) throw new PointsLedgerException(PointsLedgerErrors.LimitTooHigh, "Limit cannot be greater than 100", 400);
        if (limit < 1) throw PointsLedgerException.Invalid("limit", query("limit"), "a page size from 1 to 100");
        var page = ParseInt(query, "offset") ?? 0;
        if (page < 0) throw PointsLedgerException.Invalid("offset", query("offset"), "a page number from 0");

        var descending = ParseSort(query);

        long? programId = null;
        if (Optional(query("programId")) is { } programText)
        {
            if (!long.TryParse(programText, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                throw PointsLedgerException.Invalid("programId", programText, "a program id");
            programId = id;
        }
        var tillConcept = ParseBool(query, "includeTillConceptEvents") ?? false;
        if (tillConcept && programId is null)
            throw PointsLedgerException.Combination("includeTillConceptEvents=true needs programId");

        EntryType? entryType = null;
        if (Optional(query("ledgerEntryType")) is { } entryText)
        {
            if (!LedgerNames.TryParseEntryType(entryText, out var parsed))
                throw new PointsLedgerException(PointsLedgerErrors.InvalidLedgerEntryType, "Invalid ledgerEntryType passed in request", 400);
            entryType = parsed;
        }

        PointCategory? category = null;
        if (Optional(query("pointCategoryType")) is { } categoryText)
        {
            // Only the three wire names: the display names (Main, ...) are output, not input.
            if (categoryText.ToUpperInvariant() is not ("REGULAR" or "PROMISED" or "TRIGGER_BASED") || !LedgerNames.TryParseCategory(categoryText, out var parsed))
                throw new PointsLedgerException(PointsLedgerErrors.InvalidPointCategoryType, "Invalid pointCategoryType passed in request", 400);
            category = parsed;
        }

        var (scope, names, effectiveCategory) = ApplyBehaviourTable(query, category, warnings);
        var (from, to) = ParseWindow(query);

        var role = Optional(query("role"));
        if (role is not null && subject == LedgerSubject.Customer)
        {
            warnings.Add("role applies to user groups (type=USERGROUP2) only and was ignored");
            role = null;
        }

        return new LedgerQuery
        {
            Subject = subject,
            IdentifierName = canonicalName,
            IdentifierValue = identifierValue,
            Source = canonicalSource,
            AccountId = accountId,
            TillId = Optional(query("tillId")),
            ProgramId = programId,
            IncludeTillConceptEvents = tillConcept,
            EntryType = entryType,
            Category = effectiveCategory,
            Currencies = scope,
            CurrencyNames = names,
            FromMs = from,
            ToMs = to,
            Limit = limit,
            Page = page,
            Descending = descending,
            Role = role?.ToUpperInvariant(),
            Warnings = warnings,
        };
    }

    /// <summary>
    /// The spec's behaviour table. Rows, in its order:
    /// 1. inc=true, category, exclude not true: points and currencies of that category;
    /// 2. inc=true, no category, exclude not true: everything;
    /// 3. inc=true, no category, exclude=true: currencies only;
    /// 4. inc=true, category, exclude=true: currencies only, the category ignored;
    /// 5. inc=false, no category: points of every category, no currencies;
    /// 6. inc=false, category: points of that category, no currencies.
    /// alternateCurrencyNames (with inc=false) reads the named currencies; with inc=true all
    /// currencies are listed, as the spec says, and a warning says the names were not applied.
    /// </summary>
    private static (CurrencyScope Scope, IReadOnlyList<string> Names, PointCategory? Category) ApplyBehaviourTable(
        Func<string, string?> query, PointCategory? category, List<string> warnings)
    {
        var include = ParseBool(query, "includeAlternateCurrencies") ?? false;
        var exclude = ParseBool(query, "excludePointCategories") ?? false;
        var names = (Optional(query("alternateCurrencyNames")) ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        if (Optional(query("alternateCurrencyNames")) is not null && names.Count == 0)
            throw new PointsLedgerException(PointsLedgerErrors.InvalidAlternateCurrencyNames, "Invalid alternateCurrencyNames passed in request", 400);

        if (include)
        {
            if (names.Count > 0) warnings.Add("alternateCurrencyNames was ignored: includeAlternateCurrencies=true lists every alternate currency");
            if (exclude)
            {
                if (category is not null) warnings.Add("pointCategoryType was ignored: excludePointCategories=true lists alternate currencies only");
                return (CurrencyScope.CurrenciesOnly, [], null);
            }
            return (CurrencyScope.PointsAndCurrencies, [], category);
        }
        if (names.Count > 0) return (CurrencyScope.NamedCurrencies, names, category);
        if (exclude) warnings.Add("excludePointCategories applies with includeAlternateCurrencies=true or alternateCurrencyNames only and was ignored");
        return (CurrencyScope.PointsOnly, [], category);
    }

    /// <summary>
    /// The spec's date rules: both dates at most 90 days apart; one date alone reads 90 days from it
    /// (forwards from a start, backwards from an end), a year with includeLastOneYearData=true;
    /// neither, or isFilterBasedOnDate=false, reads the whole history. A one-date window that would
    /// reach before 0001-01-01 or past 9999-12-31 ends at the calendar's edge instead.
    /// </summary>
    private static (long? From, long? To) ParseWindow(Func<string, string?> query)
    {
        var start = ParseDate(query, "startDate");
        var end = ParseDate(query, "endDate");
        var filterOnDate = ParseBool(query, "isFilterBasedOnDate") ?? true;
        var lastYear = ParseBool(query, "includeLastOneYearData") ?? false;
        if (!filterOnDate || (start is null && end is null)) return (null, null);

        if (start is { } s && end is { } e)
        {
            if (e < s) throw PointsLedgerException.Combination("endDate is before startDate");
            if (e - s > LedgerQuery.MaxWindow)
                throw new PointsLedgerException(PointsLedgerErrors.DateWindowTooWide,
                    "The maximum difference between startDate and endDate should not be more than 90 days", 400);
            return (s.ToUnixTimeMilliseconds(), e.ToUnixTimeMilliseconds());
        }
        if (start is { } from)
        {
            var to = lastYear
                ? (from.Year < DateTimeOffset.MaxValue.Year ? from.AddYears(1) : DateTimeOffset.MaxValue)
                : (DateTimeOffset.MaxValue - from > LedgerQuery.MaxWindow ? from + LedgerQuery.MaxWindow : DateTimeOffset.MaxValue);
            return (from.ToUnixTimeMilliseconds(), to.ToUnixTimeMilliseconds());
        }
        var until = end!.Value;
        var since = lastYear
            ? (until.Year > DateTimeOffset.MinValue.Year ? until.AddYears(-1) : DateTimeOffset.MinValue)
            : (until - DateTimeOffset.MinValue > LedgerQuery.MaxWindow ? until - LedgerQuery.MaxWindow : DateTimeOffset.MinValue);
        return (since.ToUnixTimeMilliseconds(), until.ToUnixTimeMilliseconds());
    }

    /// <summary>
    /// A date in the spec's one format and no other: no bare dates, fractions, zones or spaces
    /// (an empty value is an absent one, as for every parameter).
    /// </summary>
    private static DateTimeOffset? ParseDate(Func<string, string?> query, string name)
    {
        var text = query(name);
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (!DateTime.TryParseExact(text, DateFormat, CultureInfo.InvariantCulture, DateTimeStyles.None, out var parsed))
            throw PointsLedgerException.Invalid(name, text, "a date in YYYY-MM-DDThh:mm:ss format");
        return new DateTimeOffset(DateTime.SpecifyKind(parsed, DateTimeKind.Utc));
    }

    private static LedgerSubject ParseType(string? type) => Optional(type)?.ToUpperInvariant() switch
    {
        null or "CUSTOMER" => LedgerSubject.Customer,
        "USERGROUP2" => LedgerSubject.UserGroup,
        _ => throw PointsLedgerException.Invalid("type", type, "USERGROUP2 for a user group, or absent (CUSTOMER) for a customer"),
    };

    private static string? CanonicalGroupIdentifier(string name) => name.ToUpperInvariant() switch
    {
        // The spec's own group example passes identifierName=id: the group id.
        "GROUPID" or "ID" => "groupId",
        "EXTERNALID" => "externalId",
        "PRIMARYUSERID" => "primaryUserId",
        _ => null,
    };

    private static bool ParseSort(Func<string, string?> query)
    {
        var sortOrder = ParseDirection(query, "sortOrder");
        var sort = ParseDirection(query, "sort");
        if (sortOrder is not null && sort is not null && sortOrder != sort)
            throw PointsLedgerException.Combination("sortOrder and sort ask for different orders");
        return sortOrder ?? sort ?? true;
    }

    private static bool? ParseDirection(Func<string, string?> query, string name) => Optional(query(name))?.ToUpperInvariant() switch
    {
        null => null,
        "DESC" => true,
        "ASC" => false,
        _ => throw PointsLedgerException.Invalid(name, query(name), "ASC or DESC"),
    };

    private static bool? ParseBool(Func<string, string?> query, string name) => Optional(query(name))?.ToUpperInvariant() switch
    {
        null => null,
        "TRUE" => true,
        "FALSE" => false,
        _ => throw PointsLedgerException.Invalid(name, query(name), "true or false"),
    };

    private static int? ParseInt(Func<string, string?> query, string name)
    {
        if (Optional(query(name)) is not { } text) return null;
        return int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw PointsLedgerException.Invalid(name, text, "a whole number");
    }

    private static string Required(Func<string, string?> query, string name) =>
        Optional(query(name)) ?? throw PointsLedgerException.Missing(name);

    private static string? Optional(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}
