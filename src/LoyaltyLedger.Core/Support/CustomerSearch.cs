using System.Globalization;
using Dapper;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Support;

/// <summary>What a support agent searches by.</summary>
public enum SearchKind { Any, CustomerId, Email, Mobile, ExternalId, Card, GroupId }

/// <summary>A customer or a user group that a search found, with what matched.</summary>
public sealed record SearchHit(bool IsGroup, long Id, string Name, string Matched);

/// <summary>
/// Finds customers and groups for the support console: by customer id, email, mobile, external id,
/// card (loyalty account) number, or group id. Every lookup is an exact match on an indexed key
/// (customers' primary key, <c>ix_customer_identifiers_lookup</c>, the accounts' and groups' primary
/// keys), so a search costs a few index probes whatever the organization's size.
/// </summary>
public static class CustomerSearch
{
    /// <summary>At most this many hits per kind: an identifier shared by more customers than this is a data problem to fix, not to page through.</summary>
    public const int MaxHits = 20;

    public static async Task<IReadOnlyList<SearchHit>> FindAsync(LedgerDatabase db, long orgId, SearchKind kind, string? text, CancellationToken ct)
    {
        var value = text?.Trim() ?? "";
        if (value.Length is 0 or > 200) return [];
        return await db.ReadAsync(async c =>
        {
            var hits = new List<SearchHit>();
            void AddCustomers(IEnumerable<Customer> found, string matched)
            {
                foreach (var customer in found)
                {
                    if (hits.Any(h => !h.IsGroup && h.Id == customer.CustomerId)) continue;
                    hits.Add(new SearchHit(false, customer.CustomerId, DisplayName(customer), matched));
                }
            }
            var number = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : (long?)null;

            if (kind is SearchKind.CustomerId or SearchKind.Any && number is { } customerId
                && await CustomerDirectory.GetAsync(c, db.Dialect, orgId, customerId, null, ct) is { } byId)
                AddCustomers([byId], "customer id");
            foreach (var (identifierKind, searchKind, label) in new[]
                     {
                         ("email", SearchKind.Email, "email"), ("mobile", SearchKind.Mobile, "mobile"), ("externalId", SearchKind.ExternalId, "external id"),
                     })
            {
                if (kind != searchKind && kind != SearchKind.Any) continue;
                AddCustomers(await CustomerDirectory.FindAllAsync(c, db.Dialect, orgId, "ALL", identifierKind, value, null, MaxHits, null, ct), label);
            }
            if (kind is SearchKind.Card or SearchKind.Any)
            {
                var holder = await c.ExecuteScalarAsync<long?>(
                    new CommandDefinition("SELECT customer_id FROM loyalty_accounts WHERE org_id = @orgId AND account_number = @value", new { orgId, value }, cancellationToken: ct));
                if (holder is { } id && await CustomerDirectory.GetAsync(c, db.Dialect, orgId, id, null, ct) is { } byCard) AddCustomers([byCard], "card number");
            }
            if (kind is SearchKind.GroupId or SearchKind.Any && number is not null
                && await GroupDirectory.FindAsync(c, db.Dialect, orgId, "groupId", value, null, ct) is { } group)
                hits.Add(new SearchHit(true, group.GroupId, group.Name, "group id"));
            return hits;
        }, ct);
    }

    /// <summary>A customer's name as the console shows it: first and last name, or the id when there is none.</summary>
    public static string DisplayName(Customer customer)
    {
        var name = $"{customer.FirstName} {customer.LastName}".Trim();
        return name.Length > 0 ? name : "Customer " + customer.CustomerId.ToString(CultureInfo.InvariantCulture);
    }
}
