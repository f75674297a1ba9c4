using System.Data.Common;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Vault;

/// <summary>Voucher definitions: what a program's points can buy, at what price and for how long.</summary>
public static class VoucherCatalog
{
    public const int MaxUses = 1000;

    private sealed class Row
    {
        public long VoucherId { get; set; }
        public long ProgramId { get; set; }
        public string Name { get; set; } = "";
        public long Price { get; set; }
        public long? ValidDays { get; set; }
        public long Uses { get; set; }
    }

    /// <summary>A definition with its price still in thousandths, for postings.</summary>
    internal sealed record Definition(long VoucherId, long ProgramId, string Name, Points Price, int? ValidDays, int Uses)
    {
        public VoucherDefinition View() => new(VoucherId, ProgramId, Name, Price.ToDecimal(), ValidDays, Uses);
    }

    private const string Columns = "voucher_id, program_id, name, price, valid_days, uses";

    private static Definition ToDefinition(Row r) =>
        new(r.VoucherId, r.ProgramId, r.Name, new Points(r.Price), r.ValidDays is { } d ? (int)d : null, (int)r.Uses);

    internal static async Task<IReadOnlyList<Definition>> ListDefinitionsAsync(DbConnection c, SqlDialect dialect, long orgId, long programId, DbTransaction? tx,
        CancellationToken ct) =>
        (await KeptReads.QueryAsync<Row>(c, dialect, $"SELECT {Columns} FROM voucher_definitions WHERE org_id = @orgId AND program_id = @programId ORDER BY voucher_id",
            new { orgId, programId }, tx, ct)).Select(ToDefinition).ToList();

    internal static async Task<Definition?> FindDefinitionAsync(DbConnection c, SqlDialect dialect, long orgId, long voucherId, DbTransaction? tx,
        CancellationToken ct) =>
        (await KeptReads.QueryAsync<Row>(c, dialect, $"SELECT {Columns} FROM voucher_definitions WHERE org_id = @orgId AND voucher_id = @voucherId",
            new { orgId, voucherId }, tx, ct)).Select(ToDefinition).FirstOrDefault();

    /// <summary>The program's voucher definitions; 404 when the program is unknown.</summary>
    public static async Task<IReadOnlyList<VoucherDefinition>> ListAsync(DbConnection c, SqlDialect dialect, long orgId, long programId, CancellationToken ct)
    {
        _ = await ProgramCatalog.FindAsync(c, dialect, orgId, programId, null, null, ct) ?? throw LedgerException.NotFound("program", programId);
        return (await ListDefinitionsAsync(c, dialect, orgId, programId, null, ct)).Select(d => d.View()).ToList();
    }

    public static async Task<VoucherDefinition> CreateAsync(Posting posting, long programId, NewVoucherDefinition request)
    {
        if (string.IsNullOrWhiteSpace(request.Name) || request.Name.Length > 200 || VaultTransactions.HasControlCharacters(request.Name))
            throw LedgerException.Invalid("A voucher needs a name of 1 to 200 printable characters.");
        if (!request.Price.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "A voucher's price in points must be positive.");
        if (request.ValidDays is < 1 or > 36_500) throw LedgerException.Invalid("validDays is 1 to 36500 (omit it for vouchers that never expire).");
        var uses = request.Uses ?? 1;
        if (uses is < 1 or > MaxUses) throw LedgerException.Invalid($"uses is 1 to {MaxUses}.");
        _ = await posting.WithConnectionAsync((conn, tx) => ProgramCatalog.FindAsync(conn, posting.Dialect, posting.OrgId, programId, tx, null, posting.Cancellation))
            ?? throw LedgerException.NotFound("program", programId);

        long voucherId;
        if (request.VoucherId is { } explicitId)
        {
            if (explicitId <= 0) throw LedgerException.Invalid("voucherId must be positive.");
            if (await posting.WithConnectionAsync((conn, tx) => FindDefinitionAsync(conn, posting.Dialect, posting.OrgId, explicitId, tx, posting.Cancellation)) is not null)
                throw new LedgerException(ErrorCodes.AlreadyExists, $"Voucher {explicitId} already exists.", 409);
            voucherId = explicitId;
            await posting.ClaimIdAsync("voucher", voucherId);
        }
        else
        {
            voucherId = await posting.NextIdAsync("voucher");
        }

        await posting.ExecuteAsync(
            """
            INSERT INTO voucher_definitions (org_id, voucher_id, program_id, name, price, valid_days, uses, created_at)
            VALUES (@org, @voucherId, @programId, @name, @price, @validDays, @uses, @now)
            """,
            new
            {
                org = posting.OrgId, voucherId, programId, name = request.Name.Trim(), price = request.Price.Thousandths,
                validDays = request.ValidDays, uses, now = posting.NowMs,
            });
        return new VoucherDefinition(voucherId, programId, request.Name.Trim(), request.Price.ToDecimal(), request.ValidDays, uses);
    }
}
