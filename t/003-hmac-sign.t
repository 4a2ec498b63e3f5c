#!/usr/bin/perl
# Unit test for t/lib/AcsTest/Hmac.pm (no nginx needed):
#   (a) a vector computed independently with the openssl CLI,
#   (b) interop with Microsoft's own policy (@azure/communication-common)
#       through t/lib/acs-sign.mjs.  Required: fails, never skips, without
#       node/npm.
#   prove -I t/lib t/003-hmac-sign.t

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use AcsTest::Util qw(slurp spew);
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Spec;
use File::Temp qw(tempdir);
use IPC::Open2 qw(open2);
use JSON::PP ();
use Time::Local qw(timegm);

use AcsTest::Hmac;

my $T   = $FindBin::Bin;
my $TMP = tempdir('hmac-unit-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $H   = 'AcsTest::Hmac';

# 32 bytes 00..1f
my $KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
my $EMPTY_HASH = '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';
my $AUTH_PREFIX = 'HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256'
    . '&Signature=';



sub in_path {
    my ($prog) = @_;
    for my $d (File::Spec->path) {
        return "$d/$prog" if -x "$d/$prog";
    }
    return undef;
}

# run a command with stdout/stderr to files; die unless it succeeds
sub run {
    my (@cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open(STDOUT, '>', "$TMP/out") or die;
        open(STDERR, '>', "$TMP/err") or die;
        exec @cmd or exit 127;
    }
    waitpid($pid, 0);
    die "@cmd: exit " . ($? >> 8) . ': ' . slurp("$TMP/err") if $?;
}

# RFC 1123 text back to epoch (independent of AcsTest::Hmac)
my %MON;
@MON{qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)} = 0 .. 11;

sub rfc_epoch {
    my ($s) = @_;
    $s =~ /^\w{3}, (\d\d) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$/
        or return undef;
    return timegm($6, $5, $4, $1, $MON{$2}, $3);
}

# ---------------------------------------------------------------------------
# rfc1123

is($H->can('rfc1123')->(0), 'Thu, 01 Jan 1970 00:00:00 GMT', 'rfc1123 epoch 0');
is(AcsTest::Hmac::rfc1123(1795828390), 'Sat, 28 Nov 2026 01:13:10 GMT',
    'rfc1123 pads the day and uses GMT');
is(AcsTest::Hmac::rfc1123(951782400), 'Tue, 29 Feb 2000 00:00:00 GMT',
    'rfc1123 leap day');

# ---------------------------------------------------------------------------
# (a) the fixed vector

my $DATE = 'Sat, 28 Nov 2026 01:13:10 GMT';
my $PATH = '/acs/users/8%3Aacs%3Ax/devices/d1?api-version=1';
my $BODY = '{"platform":"fcmv1","handle":"dGVzdC10b2tlbg:APA91bH-x_y"}';
my $STS  = "PUT\n$PATH\n$DATE;localhost:8080;"
    . 'a3sSC1NCtwRqDo424PlXwE5XU5kFJY0f9GS4foLOxl4=';
my $SIG  = 'eTY+unc0cv1YRUymYCsNT7tYPdnIPJY0rombLOxLn0M=';

# recompute the constants with the openssl CLI, independently of Digest::SHA
{
    spew("$TMP/key.b64", $KEY);
    run('openssl', 'base64', '-d', '-A', '-in', "$TMP/key.b64", '-out', "$TMP/key.bin");
    my $hexkey = unpack 'H*', slurp("$TMP/key.bin");
    is($hexkey, join('', map { sprintf '%02x', $_ } 0 .. 31), 'openssl decodes the key');

    spew("$TMP/body", $BODY);
    run('openssl', 'dgst', '-sha256', '-binary', '-out', "$TMP/body.sha", "$TMP/body");
    run('openssl', 'base64', '-A', '-in', "$TMP/body.sha");
    my $ch = slurp("$TMP/out");
    $ch =~ s/\s+//g;
    is($ch, 'a3sSC1NCtwRqDo424PlXwE5XU5kFJY0f9GS4foLOxl4=', 'openssl content hash');

    spew("$TMP/empty", '');
    run('openssl', 'dgst', '-sha256', '-binary', '-out', "$TMP/empty.sha", "$TMP/empty");
    run('openssl', 'base64', '-A', '-in', "$TMP/empty.sha");
    (my $eh = slurp("$TMP/out")) =~ s/\s+//g;
    is($eh, $EMPTY_HASH, 'openssl hash of the empty body');

    spew("$TMP/sts", $STS);
    run('openssl', 'dgst', '-sha256', '-mac', 'HMAC', '-macopt', "hexkey:$hexkey",
        '-binary', '-out', "$TMP/sig.bin", "$TMP/sts");
    run('openssl', 'base64', '-A', '-in', "$TMP/sig.bin");
    (my $sig = slurp("$TMP/out")) =~ s/\s+//g;
    is($sig, $SIG, 'openssl HMAC over the string to sign');
}

{
    my $h = AcsTest::Hmac::sign(method => 'put', path => $PATH, host => 'localhost:8080',
                                body => $BODY, key => $KEY, date => $DATE);
    is($h->{string_to_sign}, $STS, 'string to sign (method upper-cased)');
    is(AcsTest::Hmac::string_to_sign(method => 'PUT', path => $PATH, host => 'localhost:8080',
                                     body => $BODY, date => $DATE),
       $STS, 'string_to_sign()');
    is($h->{'x-ms-date'}, $DATE, 'x-ms-date kept verbatim');
    is($h->{'x-ms-content-sha256'}, 'a3sSC1NCtwRqDo424PlXwE5XU5kFJY0f9GS4foLOxl4=',
       'x-ms-content-sha256');
    is($h->{Authorization}, $AUTH_PREFIX . $SIG, 'Authorization matches the openssl vector');
    is($h->{headers_text},
       "x-ms-date: $DATE\nx-ms-content-sha256: $h->{'x-ms-content-sha256'}\n"
       . "Authorization: $AUTH_PREFIX$SIG",
       'headers_text');

    my $e = AcsTest::Hmac::sign(method => 'PUT', path => $PATH, host => 'localhost:8080',
                                body => $BODY, key => $KEY, date => 1795828390);
    is($e->{Authorization}, $h->{Authorization}, 'date as epoch = date as RFC 1123');

    my $d = AcsTest::Hmac::sign(method => 'DELETE', path => '/x', host => 'h', key => $KEY);
    is($d->{'x-ms-content-sha256'}, $EMPTY_HASH, 'no body hashes the empty string');
    like($d->{'x-ms-date'}, qr/^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/,
         'default date is now, RFC 1123');
    ok(abs(rfc_epoch($d->{'x-ms-date'}) - time) <= 2, 'default date is now');
}

# ---------------------------------------------------------------------------
# (b) the official implementation

my $node = in_path('node');
my $npm  = in_path('npm');
my $have = -f "$T/node_modules/\@azure/communication-common/package.json";

if (!$have && $node && $npm) {
    diag('installing t/node_modules with npm ci');
    open(my $save, '>&', \*STDOUT) or die;
    open(STDOUT, '>&', \*STDERR) or die;
    system($npm, 'ci', '--prefix', $T, '--no-audit', '--no-fund');
    open(STDOUT, '>&', $save) or die;
    $have = -f "$T/node_modules/\@azure/communication-common/package.json";
}

# no skipping: without node or the library this file fails, saying why
if (!ok($node && $have, 'node and the official library (t/node_modules) are available')) {
    diag(!$node ? 'node is missing: the interop check is required (apt-get install nodejs npm)'
       : !$npm  ? 'npm is missing: the interop check is required (apt-get install npm)'
       :          '@azure/communication-common missing: npm ci --prefix t failed');
    done_testing();
    exit 1;
}

my $JSON = JSON::PP->new->utf8->canonical(1);

sub official {
    my (%req) = @_;
    my $pid = open2(my $out, my $in, $node, "$T/lib/acs-sign.mjs");
    print {$in} $JSON->encode(\%req);
    close $in;
    my $res = do { local $/; <$out> };
    waitpid($pid, 0);
    die "acs-sign.mjs failed (exit " . ($? >> 8) . ")\n" if $?;
    return $JSON->decode($res)->{headers};
}

my $OFFICIAL_NAMES = [sort 'Authorization', 'Host', 'x-ms-content-sha256', 'x-ms-date'];

# url => what the library sends; path and host: what goes on the wire
my @cases = (
    { name => 'PUT with a JSON body and a raw id',
      method => 'PUT',
      url  => 'http://localhost:8080/acs/users/8%3Aacs%3Ab0d7c3a2-6f1e-4c2d-9a8b-1f2e3d4c5b6a_00000021-5f7a-4b21-8c1d-3e2f1a0b9c8d/devices/iphone-15.a_b?api-version=1',
      host => 'localhost:8080',
      path => '/acs/users/8%3Aacs%3Ab0d7c3a2-6f1e-4c2d-9a8b-1f2e3d4c5b6a_00000021-5f7a-4b21-8c1d-3e2f1a0b9c8d/devices/iphone-15.a_b?api-version=1',
      body => '{"platform":"apns","handle":"' . ('a1b2c3d4' x 8) . '","ttlSeconds":86400}' },
    { name => 'GET with a query string',
      method => 'GET',
      url  => 'http://localhost:8080/acs/users/8%3Aacs%3Ax/devices?api-version=2025-06-01&maxpagesize=10',
      host => 'localhost:8080',
      path => '/acs/users/8%3Aacs%3Ax/devices?api-version=2025-06-01&maxpagesize=10' },
    { name => 'DELETE with an empty body',
      method => 'DELETE',
      url  => 'http://localhost:8080/acs/users/8%3Aacs%3Ax/devices/d1',
      host => 'localhost:8080',
      path => '/acs/users/8%3Aacs%3Ax/devices/d1' },
    { name => 'lower-case percent-encoding is kept as sent',
      method => 'DELETE',
      url  => 'http://localhost:8080/acs/users/8%3aacs%3ax',
      host => 'localhost:8080',
      path => '/acs/users/8%3aacs%3ax' },
    { name => 'host with a port (Test::Nginx default)',
      method => 'GET',
      url  => 'http://127.0.0.1:1984/acs/users/8%3Aacs%3Ax/devices/d1',
      host => '127.0.0.1:1984',
      path => '/acs/users/8%3Aacs%3Ax/devices/d1' },
    { name => 'https without a port',
      method => 'PUT',
      url  => 'https://push.contoso.example/acs/users/8%3Aacs%3Ax/devices/web',
      host => 'push.contoso.example',
      path => '/acs/users/8%3Aacs%3Ax/devices/web',
      body => '{"platform":"browser","handle":"https://fcm.googleapis.com/fcm/send/x",'
            . '"p256dh":"BNc","auth":"tBH"}' },
    { name => 'a default port is dropped from Host',
      method => 'GET',
      url  => 'http://LocalHost:80/acs/users/8%3Aacs%3Ax/devices',
      host => 'localhost',
      path => '/acs/users/8%3Aacs%3Ax/devices' },
    { name => 'a non-ASCII body is hashed as UTF-8 bytes',
      method => 'PUT',
      url  => 'http://localhost:8080/acs/users/8%3Aacs%3Ax/devices/d1',
      host => 'localhost:8080',
      path => '/acs/users/8%3Aacs%3Ax/devices/d1',
      body => "{\"platform\":\"wns\",\"handle\":\"https://wns.example/?t=Zo\xc3\xab\"}" },
    # The library signs url.searchParams.toString(), i.e. the query
    # re-serialized as application/x-www-form-urlencoded, while it sends the
    # query as written.  They differ once the query holds characters such as
    # ':' or '%20'; the registration API needs no such query.
    { name => 'the library signs a re-encoded query (":" becomes "%3A")',
      method => 'GET',
      url  => 'http://localhost:8080/acs/users/8%3Aacs%3Ax/devices?x=a:b',
      host => 'localhost:8080',
      path => '/acs/users/8%3Aacs%3Ax/devices?x=a%3Ab' },
);

for my $c (@cases) {
    my %req = (method => $c->{method}, url => $c->{url}, key => $KEY);
    if (defined $c->{body}) {
        my $chars = $c->{body};
        utf8::decode($chars);
        $req{body} = $chars;
    }
    my $o = official(%req);

    is_deeply([sort keys %$o], $OFFICIAL_NAMES, "$c->{name}: official header names");
    is($o->{Host}, $c->{host}, "$c->{name}: official Host");

    my $date = $o->{'x-ms-date'};
    my $t    = rfc_epoch($date);
    ok(defined $t && abs($t - time) <= 5, "$c->{name}: official x-ms-date is now, RFC 1123")
        or diag("x-ms-date: $date");
    is(AcsTest::Hmac::rfc1123($t), $date, "$c->{name}: rfc1123() writes the same date text");

    my $p = AcsTest::Hmac::sign(method => $c->{method}, path => $c->{path},
                                host => $c->{host}, body => $c->{body},
                                key => $KEY, date => $date);
    is($p->{'x-ms-content-sha256'}, $o->{'x-ms-content-sha256'},
       "$c->{name}: content hash equals the official one");
    is($p->{Authorization}, $o->{Authorization},
       "$c->{name}: Authorization equals the official one");
}

# the wire form of the last case does NOT verify: a server checking the query
# as received would refuse the official client's request for such a query
{
    my $c = $cases[-1];
    my $o = official(method => 'GET', url => $c->{url}, key => $KEY);
    my $p = AcsTest::Hmac::sign(method => 'GET', path => '/acs/users/8%3Aacs%3Ax/devices?x=a:b',
                                host => $c->{host}, key => $KEY, date => $o->{'x-ms-date'});
    isnt($p->{Authorization}, $o->{Authorization},
         'the official signature does not cover the query as sent when it is re-encoded');
}

done_testing();
