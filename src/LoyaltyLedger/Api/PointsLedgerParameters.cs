using System.Text.Json.Nodes;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// The points-ledger read's query parameters as the spec defines them. The handler reads the raw
/// query string (so a malformed value gets the spec's error code, not the framework's binding
/// error), so the framework cannot see them: they are described here, with the spec's words, and
/// <c>ApiDocumentTests</c> checks that every parameter the parser reads is listed.
/// </summary>
public static class PointsLedgerParameters
{
    private sealed record Parameter(string Name, JsonSchemaType Type, string Description, bool Required = false,
        string[]? Enum = null, JsonNode? Default = null, int? Minimum = null, int? Maximum = null, string? Format = null);

    private static readonly string[] Booleans = ["true", "false"];

    private static readonly Parameter[] All =
    [
        new("identifierName", JsonSchemaType.String,
            "Identifier type to identify the customer (id, email, mobile, externalId); for a user group (type=USERGROUP2): groupId (or id), externalId, primaryUserId.",
            Required: true, Enum: ["id", "email", "mobile", "externalId", "groupId", "primaryUserId"]),
        new("identifierValue", JsonSchemaType.String, "Value of the specified identifier type of the customer or group.", Required: true),
        new("source", JsonSchemaType.String,
            "Source in which the identifier is available, e.g. INSTORE, MARTJACK, WECHAT, FACEBOOK, WEB_ENGAGE, TMALL, TAOBAO, JD, ECOMMERCE, WEBSITE, LINE, ALL.",
            Required: true),
        new("acountId", JsonSchemaType.String,
            "For sources with multiple accounts, pass the specific accountId (the spec's spelling). Mandatory when the identifier belongs to customers under several accounts of the source."),
        new("accountId", JsonSchemaType.String, "The same as acountId, in the usual spelling."),
        new("type", JsonSchemaType.String, "Type of entity: USERGROUP2 reads a user group's pooled ledger.", Enum: ["CUSTOMER", "USERGROUP2"]),
        new("tillId", JsonSchemaType.String, "Get the customer's ledger information of a specific till: its code or its id."),
        new("limit", JsonSchemaType.Integer, "Number of ledger records (events) per page. The maximum supported limit is 100 (error 11029 above).",
            Default: 10, Minimum: 1, Maximum: 100),
        new("offset", JsonSchemaType.Integer, "Page number to retrieve; the first page is 0. Past the last page: error 11003.", Default: 0, Minimum: 0),
        new("programId", JsonSchemaType.Integer, "Retrieve the ledger details of a specific program."),
        new("isFilterBasedOnDate", JsonSchemaType.String,
            "Whether the date filter is applied. false reads the whole history; without startDate and endDate it is false.", Enum: Booleans, Default: "true"),
        new("includeLastOneYearData", JsonSchemaType.String,
            "With only startDate or endDate: read a year from it instead of 90 days.", Enum: Booleans, Default: "false"),
        new("startDate", JsonSchemaType.String,
            "Ledger information from on or after this date, YYYY-MM-DDThh:mm:ss (UTC). At most 90 days before endDate (error 11006); alone, reads 90 days forward (a year with includeLastOneYearData=true).",
            Format: "date-time"),
        new("endDate", JsonSchemaType.String,
            "Ledger information until this date, YYYY-MM-DDThh:mm:ss (UTC). Alone, reads 90 days back (a year with includeLastOneYearData=true).",
            Format: "date-time"),
        new("includeTillConceptEvents", JsonSchemaType.String,
            "true also fetches deductions made at the tills of the program's concept, even from a different program. Needs programId (error 11005 otherwise).",
            Enum: Booleans, Default: "false"),
        new("ledgerEntryType", JsonSchemaType.String, "Only ledger entries of this type; by default all.", Enum: ["CREDIT", "DEBIT", "OPENING_BALANCE"]),
        new("pointCategoryType", JsonSchemaType.String, "Only this point category; by default all.", Enum: ["REGULAR", "PROMISED", "TRIGGER_BASED"]),
        new("includeAlternateCurrencies", JsonSchemaType.String, "true adds every alternate currency the customer holds to the points.",
            Enum: Booleans, Default: "false"),
        new("alternateCurrencyNames", JsonSchemaType.String,
            "Comma-separated alternate currency names to read; an unknown name is error 9005. Ignored (with a warning) when includeAlternateCurrencies=true."),
        new("excludePointCategories", JsonSchemaType.String,
            "With includeAlternateCurrencies=true: only alternate currency entries (pointCategoryType is then ignored).", Enum: Booleans, Default: "false"),
        new("sortOrder", JsonSchemaType.String, "Order of entries by date: DESC (newest first, the default) or ASC.", Enum: ["ASC", "DESC"], Default: "DESC"),
        new("sort", JsonSchemaType.String, "The same as sortOrder (the user-group spelling).", Enum: ["ASC", "DESC"]),
        new("role", JsonSchemaType.String, "User groups: only the events of members with this role, e.g. PRIMARY, SECONDARY."),
    ];

    /// <summary>The names of the documented parameters, for the test that compares them with the parser's.</summary>
    public static IEnumerable<string> Names => All.Select(p => p.Name);

    /// <summary>Adds the parameters to the operation.</summary>
    public static Task DescribeAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken ct)
    {
        operation.Description =
            "Wire-compatible with the points-ledger spec: its parameter names and spellings, response fields and formats, " +
            "and error body {errors:[{code,message}],warnings:[]}. A ledger entry is an event with its lines (entryDetails); " +
            "limit events per page, newest first unless sortOrder=ASC.";
        operation.Parameters ??= [];
        foreach (var p in All)
        {
            var schema = new OpenApiSchema { Type = p.Type, Format = p.Format, Default = p.Default, Minimum = p.Minimum?.ToString(), Maximum = p.Maximum?.ToString() };
            if (p.Enum is not null) schema.Enum = p.Enum.Select(v => (JsonNode)JsonValue.Create(v)).ToList();
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = p.Name, In = ParameterLocation.Query, Required = p.Required, Description = p.Description, Schema = schema,
            });
        }
        return Task.CompletedTask;
    }
}
