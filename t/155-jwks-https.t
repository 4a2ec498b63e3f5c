# acs_notify_entra jwks=https://...: the workers fetch the key set with the
# module's libcurl client, TLS verified against jwks_ca_file=, at start and
# every jwks_refresh, and again on an unknown kid.  Until a worker's first
# fetch, tokens get 503 (Event Grid tries again); a failed refresh keeps
# the last good set; a key removed from the set is refused at once, cached
# verdicts included.  The key server is a stock nginx with TLS from the
# test CA, serving a file the test rewrites.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use AcsTest::Util;
use AcsTest::Entra;
use AcsTest::FakeNH;
use AcsTest::Server;

my $srv = AcsTest::Server->new('155-jwks-https');
my $keys = AcsTest::Entra::setup($srv->root . '/keys');

# --- the key server

my $ks = AcsTest::Server->new('155-jwks-server');
my $tls = AcsTest::FakeNH::setup_ca($ks->root . '/ca');
my $www = $ks->root . '/www';
mkdir $www;

$ks->write_conf(listen => 'ssl', server => <<"SERVER");
        ssl_certificate $tls->{cert};
        ssl_certificate_key $tls->{key};
        location = /keys {
            alias $www/keys.json;
            default_type application/json;
        }
SERVER

my $URL = 'https://127.0.0.1:' . $ks->port . '/keys';

# the key set served from now on: the keys of these kids
sub publish {
    my (@kids) = @_;
    my $all = decode_json(do { local (@ARGV, $/) = $keys->{jwks}; <> });
    my %want = map { $AcsTest::Entra::KID{$_} => 1 } @kids;
    open my $fh, '>', "$www/keys.json.new" or die $!;
    print $fh encode_json({ keys => [ grep { $want{$_->{kid}} } @{ $all->{keys} } ] });
    close $fh;
    rename "$www/keys.json.new", "$www/keys.json" or die $!;
}

# --- the module

sub conf {
    my (%o) = @_;
    $srv->write_conf(workers => 2, listen => 'reuseport', server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_entra jwks=$URL jwks_ca_file=${\ ($o{ca} // $tls->{ca})}
                             jwks_refresh=${\ ($o{refresh} // '1s')}
                             ${\ ($o{extra} // '')}
                             audience=api://acs-notify-test
                             tenant=$AcsTest::Entra::TENANT;
            add_header X-Result \$acs_notify_result always;
        }
SERVER
}

my %tok = map { $_ => AcsTest::Entra::token(key => $_) } qw(key1 key2);

# (status, headers) of a delivery with this token
sub deliver {
    my ($token) = @_;
    my ($st, $h) = $srv->request(POST => '/eg', fixture('eg-chat-message-received.json'), {
        'aeg-event-type' => 'Notification', 'Content-Type' => 'application/json',
        Authorization => "Bearer $token" });
    return wantarray ? ($st, $h) : $st;
}

# the statuses of n deliveries (both workers get some: reuseport)
sub statuses {
    my ($token, $n) = @_;
    my %c;
    $c{ deliver($token) }++ for 1 .. ($n // 20);
    return join ',', map { "$_=$c{$_}" } sort keys %c;
}

# waits until every one of 20 deliveries answers status
sub until_all {
    my ($token, $status, $secs) = @_;
    my $deadline = time + ($secs // 8);
    my $got;
    while (time < $deadline) {
        $got = statuses($token);
        return $got if $got eq "$status=20";
        sleep 0.2;
    }
    return $got;
}

# the error log until a line matches re (20 s at most: valgrind is slow)
sub until_log {
    my ($re) = @_;
    my $text = '';
    for (1 .. 100) {
        $text .= $srv->new_log;
        return $text if $text =~ $re;
        sleep 0.2;
    }
    return $text;
}

sub bad_lines {
    my ($log) = @_;
    return join '', grep { /\[(alert|crit|emerg)\]/ } split /^/, $log;
}

# --- start, with the key server up

publish('key1');
$ks->start;
conf();
$srv->start;

is(until_all($tok{key1}, 200), '200=20', 'start: the fetched key verifies tokens in every worker');
like($srv->new_log, qr/\[notice\].*acs_notify: jwks "\Q$URL\E" fetched, 1 keys/, 'the fetch is logged at notice');
is(statuses($tok{key2}), '401=20', 'a key not in the set: 401');

# --- rotation: key2 published beside key1

publish('key1', 'key2');
is(until_all($tok{key2}, 200, 5), '200=20', 'rotation: the new key is taken by every worker within the refresh');
is(statuses($tok{key1}), '200=20', 'the old key still works while it is published');

# --- removal: key1 gone; its tokens are refused, cached verdicts included

publish('key2');
is(until_all($tok{key1}, 401, 5), '401=20', 'removal: a cached token of the removed key is refused by every worker');
is(statuses(AcsTest::Entra::token(key => 'key1')), '401=20', '... and a fresh one');
is(statuses($tok{key2}), '200=20', 'the remaining key goes on');
like($srv->new_log, qr/rejected 401 token: unknown token kid/, 'logged as an unknown kid');

# --- the key server down at a refresh: the last good set stays

$ks->stop;
sleep 3.5;
is(statuses($tok{key2}), '200=20', 'key server down: the last good set keeps verifying');
my $log = $srv->new_log;
my @failed = $log =~ /\[error\].*acs_notify: jwks "\Q$URL\E" not fetched: [^;]+; the 1 keys of the last good set stay in use/g;
ok(@failed >= 1 && @failed <= 2, 'the failure is logged once per worker (' . scalar(@failed) . ')');

$ks->start;
like(until_log(qr/acs_notify: jwks "\Q$URL\E" fetched, 1 keys, unchanged/), qr/unchanged/,
     'the key server back: the recovery is logged');

# --- the key server down at start: 503 with Retry-After, then 200

$srv->stop;
$ks->stop;
$srv->new_log;
$srv->start;

my ($st, $h) = deliver($tok{key2});
is($st, 503, 'no key set yet: 503');
is($h->{'retry-after'}, '10', '... with Retry-After');
is($h->{'x-result'}, 'unavailable:jwks', '... as unavailable:jwks');
$log = until_log(qr/tokens are answered 503 until it is/);
like($log, qr/\[error\].*jwks "\Q$URL\E" not fetched: .*tokens are answered 503 until it is/,
     'the failed first fetch is logged');
like($log, qr/\[warn\].*acs_notify: unavailable 503 jwks: no signing keys yet/,
     'the 503 is logged at warn');

$ks->start;
is(until_all($tok{key2}, 200, 8), '200=20', 'the key server up: 200 once fetched');

# --- TLS is verified: another CA's key server is refused

$srv->stop;
$srv->new_log;    # lines of the instance before
conf(ca => $tls->{other_ca});
$srv->start;
is(deliver($tok{key2}), 503, 'a key server the CA does not vouch for: no keys, 503');
# libcurl 7.88 says "SSL certificate problem: unable to ...", 8.x "SSL
# certificate OpenSSL verify result: unable to ... (20)"
like(until_log(qr/not fetched: SSL/),
     qr/jwks "\Q$URL\E" not fetched: SSL certificate [^:]*: unable to get local issuer certificate/,
     '... the TLS failure is logged');

# --- jwks_cache: the last good set for the next start

$srv->stop;
my $cache = $srv->root . '/jwks-cache.json';
conf(extra => "jwks_cache=$cache");
$srv->start;
is(until_all($tok{key2}, 200), '200=20', 'with jwks_cache: fetched');
ok(-s $cache, 'the fetched set is written to the cache');
like(do { local (@ARGV, $/) = $cache; <> }, qr/"kid":"test-kid-2"/, '... as the key server sent it');

$srv->stop;
$ks->stop;
$srv->start;
is(statuses($tok{key2}), '200=20', 'a start with the key server down verifies with the cached set');
is(statuses($tok{key1}), '401=20', '... and only with it');

# --- nginx -t needs no network, a bad configuration is refused

my ($ok, $out) = $srv->test_conf;
ok($ok, 'nginx -t passes with the key server down') or diag $out;

$srv->stop;

for my $case (["jwks=http://127.0.0.1/keys", qr/jwks "http:\/\/127.0.0.1\/keys" must be https/],
              ["jwks=$keys->{jwks} jwks_cache=$cache", qr/jwks_ca_file= and jwks_cache= go with an https:\/\/ jwks=/],
              ["jwks=$URL jwks_refresh=0s", qr/invalid jwks_refresh "0s", expected a time from 1s to 7d/],
              ["jwks=$URL jwks_ca_file=/nonexistent/ca.pem", qr/jwks_ca_file "\/nonexistent\/ca.pem"/])
{
    $srv->write_conf(server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_entra $case->[0] audience=a tenant=t;
        }
SERVER
    ($ok, $out) = $srv->test_conf;
    ok(!$ok, "refused: $case->[0]");
    like($out, $case->[1], '... saying why');
}

# --- an unknown kid makes a worker fetch at once (a long refresh)

publish('key1');
$ks->start;
conf(refresh => '1h');
$srv->start;
is(until_all($tok{key1}, 200), '200=20', 'fetched at start');
publish('key1', 'key2');
sleep 10.5;    # a worker looks again at most every 10 s
is(until_all($tok{key2}, 200, 5), '200=20', 'a new kid is fetched on demand by every worker');

# --- hostile key sets fetched every second: refused before a tree is
# built, the last good set stays, no worker dies

sub serve {
    my ($text) = @_;
    open my $fh, '>', "$www/keys.json.new" or die $!;
    print $fh $text;
    close $fh;
    rename "$www/keys.json.new", "$www/keys.json" or die $!;
}

$srv->stop;
publish('key1');
conf();
$srv->start;
is(until_all($tok{key1}, 200), '200=20', 'hostile sets: a good set first');
my @workers = sort $srv->workers;
$srv->new_log;

my $one = decode_json(do { local (@ARGV, $/) = $keys->{jwks}; <> })->{keys}[0];
for my $case (['{"keys":[' . ('[' x 400_000) . (']' x 400_000) . ']}',
               'nests arrays and objects too deep', '400,000 levels of arrays'],
              ['{"keys":[' . join(',', ('{}') x 300_000) . ']}',
               'holds too many values', '300,000 empty objects'],
              ['{"keys":[' . ('[' x 60 . ']' x 60 . ',') x 6000 . '[]]}',
               'nests arrays and objects too deep', '6,000 arrays 60 deep'],
              [encode_json({ keys => [ ($one) x 65 ] }),
               'holds more keys than the 64 a set may have', '65 keys'])
{
    my ($text, $why, $name) = @$case;
    serve($text);
    my $log = until_log(qr/not fetched: \Q$why\E/);
    like($log, qr/\[error\].*jwks "\Q$URL\E" not fetched: \Q$why\E; the 1 keys of the last good set stay in use/,
         "$name: refused, saying why");
    sleep 2.2;    # two more fetches in each worker
    is(statuses($tok{key1}), '200=20', "$name: the last good set verifies");
    is(join(',', sort $srv->workers), join(',', @workers), "$name: no worker died");
    unlike($srv->new_log, qr/exited on signal/, "$name: no crash in the log");
    publish('key1');
    until_log(qr/jwks "\Q$URL\E" fetched, 1 keys/);
}

$srv->stop;
$ks->stop;

is(bad_lines($srv->whole_log), '', 'no alert, crit or emerg');

done_testing();
