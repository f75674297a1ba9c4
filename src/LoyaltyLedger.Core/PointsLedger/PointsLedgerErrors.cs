namespace LoyaltyLedger.PointsLedger;

/// <summary>
/// The error codes of <c>GET /v2/pointsLedger/getCustomerLedgerInfo</c>. The spec's own codes keep
/// their spec messages; the codes marked "ours" fill gaps the spec leaves open and are taken from
/// the vendor's ledger range (11001-11019) without colliding with a code the vendor documents.
/// </summary>
public static class PointsLedgerErrors
{
    /// <summary>Ours: a mandatory parameter is missing; the message names it.</summary>
    public const int MissingParameter = 11001;

    /// <summary>Spec: no ledger entries for the parameters, or the offset is past the last page.</summary>
    public const int NoEntries = 11003;

    /// <summary>Ours: a parameter's value is malformed (a date, a boolean, a number, a sort order, a type).</summary>
    public const int InvalidParameter = 11004;

    /// <summary>Ours: parameters that cannot be combined (includeTillConceptEvents without programId, ...).</summary>
    public const int InvalidCombination = 11005;

    /// <summary>Ours: startDate and endDate more than 90 days apart.</summary>
    public const int DateWindowTooWide = 11006;

    /// <summary>
    /// Ours: the identifier names customers of several accounts in the source (or, with source ALL,
    /// of several sources), and no acountId says which: the spec marks acountId mandatory there.
    /// </summary>
    public const int AmbiguousIdentifier = 11009;

    /// <summary>Spec: invalid ledgerEntryType.</summary>
    public const int InvalidLedgerEntryType = 11007;

    /// <summary>Spec: invalid pointCategoryType.</summary>
    public const int InvalidPointCategoryType = 11008;

    /// <summary>Spec: the customer (or group) named does not exist, or the id is not a number.</summary>
    public const int InvalidUserId = 11012;

    /// <summary>Spec: limit over 100.</summary>
    public const int LimitTooHigh = 11029;

    /// <summary>Spec: the identifier type (or source) is unknown.</summary>
    public const int InvalidIdentifier = 8013;

    /// <summary>Spec: the owner holds no wallet (points summary) of the category or currency asked for.</summary>
    public const int NoPointsSummary = 9003;

    /// <summary>From the vendor's ledger range: an alternateCurrencyNames entry that is no currency of the organization.</summary>
    public const int InvalidAlternateCurrencyNames = 9005;

    public const string NoEntriesMessage = "There are no ledger entries present for the given parameters. Try removing parameters to widen the search";
}

/// <summary>A refusal of the points-ledger read, answered with the spec's error body.</summary>
public sealed class PointsLedgerException(int code, string message, int status) : Exception(message)
{
    public int Code { get; } = code;
    public int Status { get; } = status;

    public static PointsLedgerException Missing(string parameter) =>
        new(PointsLedgerErrors.MissingParameter, $"Mandatory parameter {parameter} is missing", 400);

    public static PointsLedgerException Invalid(string parameter, string? value, string expected) =>
        new(PointsLedgerErrors.InvalidParameter, $"Invalid value '{value}' for {parameter}: {expected}", 400);

    public static PointsLedgerException Combination(string message) =>
        new(PointsLedgerErrors.InvalidCombination, "Invalid input combination: " + message, 400);

    public static PointsLedgerException NoEntries() =>
        new(PointsLedgerErrors.NoEntries, PointsLedgerErrors.NoEntriesMessage, 404);
}
