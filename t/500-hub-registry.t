# A hub registry (acs_notify_registry hub=NAME): two nginx nodes with
# prefixes of their own and one Notification Hubs stand-in.  Devices are
# registered as installations through one node and reached through the
# other by tag sends; the stand-in's journal (requests and the fan-out of
# each tag send to installations) is the witness.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use AcsTest::Util;
use AcsTest::Reg;
use AcsTest::Server;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('500-hub-a');
my $nh = $t->nh;
my $dir = $t->dir;
my $A = $t->srv;
my $B = AcsTest::Server->new('500-hub-b');

my $JSON = JSON::PP->new->canonical;

# the http block of a node: the test's hubs, a hub registry instead of a
# directory, and "main" linked with $conn
sub http_conf {
    my (%o) = @_;
    my $http = $t->hubs_conf;
    $http =~ s{acs_notify_registry [^;]*;}
              {acs_notify_registry hub=main voip_hub=voip platforms=apns,apns-voip,fcmv1,browser;};
    $http =~ s{(acs_notify_hub main connection_string=file:\S+/)nh\.conn}{$1$o{conn}}
        if $o{conn};
    return $http . "    acs_notify_trace zone=acs_trace:1m;\n";
}

sub conf {
    my ($srv, %o) = @_;
    $srv->write_conf(http => http_conf(%o), server => <<"SERVER");
        location = /eg {
            acs_notify_eventgrid hub=main;
            acs_notify_dispatch_timeout 4s;
            add_header X-Result \$acs_notify_result always;
            add_header X-Pushes \$acs_notify_pushes always;
        }
        location = /eg-accepted {
            acs_notify_eventgrid hub=main;
            acs_notify_ack accepted;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
}

sub reg {
    my ($srv, $method, $raw_id, $device, %body) = @_;
    my $path = "/acs/users/" . AcsTest::Server::uri_escape($raw_id)
               . (!defined $device ? '' : length $device ? "/devices/$device"
                                                          : '/devices');
    my $b = $method eq 'PUT' ? AcsTest::Reg::reg_body(%body) : '';
    my %h = map { /^([^:]+): (.*)$/ ? ($1 => $2) : () }
            split /\n/, AcsTest::Reg::signed_headers($method, $path, $b);
    return $srv->request($method => $path, $b, \%h);
}

sub install_id { 'acs-' . substr(sha256_hex("$_[0]\n$_[1]"), 0, 40) }

# the tag of a raw id, as docs/registrations.md (section 5) defines it
sub tag_of {
    my ($raw, $voip) = @_;
    (my $m = $raw) =~ s/([^a-z0-9_@.:\-])/sprintf('#%02x', ord $1)/ge;
    return ($voip ? 'v:' : 'u:') . $m;
}

# the deliveries (fan-out) of tag sends after a journal mark
sub deliveries_since {
    my ($n) = @_;
    my @all = $nh->entries;
    return grep { ($_->{kind} // '') eq 'delivery' } @all[$n .. $#all];
}

sub entries_mark { scalar(my @e = $nh->entries) }

my $BOB = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d';
my $APNS = 'b0b0' x 16;
my $VOIP = 'b0b1' x 16;
my $FCM = 'bob-fcm-token:APA91bE_abc-123';

conf($A);
conf($B);
$A->start;
$B->start;

# --- registrations through node A become installations

my ($st, $h, $b) = reg($A, PUT => $BOB, 'iphone', platform => 'apns', handle => $APNS);
is($st, 200, 'PUT through node A: 200 once Notification Hubs has the installation');
my $r = eval { decode_json($b) } // {};
is($r->{platform}, 'apns', '... the registration as stored');
ok(!exists $r->{expiresAt}, '... without expiresAt: installations do not expire');

is((reg($A, PUT => $BOB, 'iphone-voip', platform => 'apns-voip', handle => $VOIP))[0], 200,
   'a VoIP token: 200');
is((reg($A, PUT => $BOB, 'pixel', platform => 'fcmv1', handle => $FCM))[0], 200,
   'an Android phone: 200');

my $inst = $nh->installation('acs-push', install_id($BOB, 'iphone'));
ok($inst, 'the installation id is derived from the raw id and the device id');
is($inst->{platform}, 'apns', '... its platform in NH\'s words');
is($inst->{pushChannel}, $APNS, '... its handle');
is_deeply([sort @{ $inst->{tags} }], [sort(tag_of($BOB), 'd:iphone')], '... tagged with the user and the device');
is($inst->{userId}, substr(tag_of($BOB), 2), '... and the user as userId');
my $vinst = $nh->installation('acs-voip', install_id($BOB, 'iphone-voip'));
ok($vinst, 'the VoIP device is an installation of the VoIP hub');
is_deeply([sort @{ $vinst->{tags} // [] }], [sort(tag_of($BOB, 1), 'd:iphone-voip')], '... tagged as VoIP');
ok(!$nh->installation('acs-push', install_id($BOB, 'iphone-voip')), '... and none of it on the main hub');

# --- read through node B

($st, $h, $b) = reg($B, GET => $BOB, 'iphone-voip');
is($st, 200, 'GET through node B: 200');
$r = eval { decode_json($b) } // {};
is($r->{platform}, 'apns-voip', '... the VoIP device read back from the VoIP hub');
is($r->{handle}, $VOIP, '... its handle');
is($r->{rawId}, $BOB, '... its user');
is((reg($B, GET => $BOB, 'nothing'))[0], 404, 'GET of an unknown device: 404');

# --- a chat message through node B reaches the devices registered on A

my $chat = fixture('eg-chat-message-received.json');
my $m = entries_mark();
($st, $h) = $B->request(POST => '/eg', $chat, { %AcsTest::Dispatch::EG });
is($st, 200, 'chat through node B: 200');
is($h->{'x-result'}, 'dispatched', '... dispatched');
is($h->{'x-pushes'}, '3', '... $acs_notify_pushes counts the tag sends');
my @sends = grep { ($_->{kind} // 'request') eq 'request' && ($_->{op} // '') eq 'tag-send' }
            do { my @e = $nh->entries; @e[$m .. $#e] };
is(scalar @sends, 3, '... one tag send per platform of the registry but VoIP (apns, fcmv1, browser)');
is_deeply([sort map { $_->{tags} } @sends], [(tag_of($BOB)) x 3], '... each to the user\'s tag');

# the trace of node B records the tag sends and the hub's answers
my (undef, undef, $tb) = $B->request(GET => '/status?trace&user=' . AcsTest::Server::uri_escape($BOB));
my @tr = @{ (eval { decode_json($tb) } // {})->{trace} // [] };
is(scalar @tr, 3, 'the trace of node B: three entries for Bob') or diag $tb;
is_deeply([sort map { $_->{tag} // '' } @tr], [(tag_of($BOB)) x 3], '... each a tag send to his tag');
is_deeply([sort map { $_->{platform} } @tr], [qw(apns browser fcmv1)], '... one per platform');
ok(!grep({ exists $_->{device} || exists $_->{handle} } @tr), '... no device: nginx does not know them');
is_deeply([sort map { $_->{tracking_id} } @tr], [sort map { $_->{tracking_id} } @sends],
          '... with the TrackingId of each of NH\'s answers');
ok(!grep({ $_->{outcome} ne 'sent' || $_->{status} != 201 } @tr), '... sent, 201');
my @d = deliveries_since($m);
is_deeply([sort map { $_->{installation_id} } @d],
          [sort(install_id($BOB, 'iphone'), install_id($BOB, 'pixel'))],
          '... NH fanned them out to the iPhone and the Android phone');

# --- an incoming call: the VoIP push, no alert to the iPhone

# the callee of the fixture is Bob
my $call_bob = fresh(fixture('eg-incoming-call.json'));
$m = entries_mark();
($st) = $B->request(POST => '/eg', $call_bob, { %AcsTest::Dispatch::EG });
is($st, 200, 'an incoming call through node B: 200');
@d = deliveries_since($m);
my %by = map { $_->{installation_id} => $_ } @d;
ok($by{ install_id($BOB, 'iphone-voip') }, '... the VoIP push reached the PushKit token')
    or diag explain \@d;
is($by{ install_id($BOB, 'iphone-voip') }{headers}{'apns-push-type'}, 'voip', '... as a VoIP push');
ok(!$by{ install_id($BOB, 'iphone') }, '... no alert to the iPhone: the user has a VoIP device');
ok($by{ install_id($BOB, 'pixel') }, '... the Android phone rings too');

# --- node B rebuilt from nothing still delivers

$B->stop;
my $B2 = AcsTest::Server->new('500-hub-b2');
conf($B2);
$B2->start;
$m = entries_mark();
(my $chat2 = $chat) =~ s/"id"\s*:\s*"([^"]+)"/"id": "$1-again"/;
($st) = $B2->request(POST => '/eg', $chat2, { %AcsTest::Dispatch::EG });
is($st, 200, 'a node started on an empty prefix: 200');
@d = deliveries_since($m);
is(scalar @d, 2, '... and the pushes reach both devices');

# --- a redelivery is not pushed twice (dedup per node, per event and platform)

$m = entries_mark();
($st) = $B2->request(POST => '/eg', $chat2, { %AcsTest::Dispatch::EG });
is($st, 200, 'the same event again: 200');
is(scalar(deliveries_since($m)), 0, '... no push: a duplicate');

# --- DELETE through B2, then a delivery through A misses the device

is((reg($B2, DELETE => $BOB, 'pixel'))[0], 204, 'DELETE through node B: 204');
ok(!$nh->installation('acs-push', install_id($BOB, 'pixel')), '... the installation is gone');
is((reg($B2, DELETE => $BOB, 'pixel'))[0], 404, 'DELETE again: 404');
$m = entries_mark();
(my $chat3 = $chat) =~ s/"id"\s*:\s*"([^"]+)"/"id": "$1-third"/;
($st) = $A->request(POST => '/eg', $chat3, { %AcsTest::Dispatch::EG });
is($st, 200, 'chat through node A: 200');
is_deeply([map { $_->{installation_id} } deliveries_since($m)], [install_id($BOB, 'iphone')],
          '... only the iPhone is reached');

# --- acknowledged at once

$m = entries_mark();
(my $chat4 = $chat) =~ s/"id"\s*:\s*"([^"]+)"/"id": "$1-fourth"/;
($st) = $A->request(POST => '/eg-accepted', $chat4, { %AcsTest::Dispatch::EG });
is($st, 202, 'acs_notify_ack accepted: 202');
$nh->wait_deliveries(scalar($nh->deliveries) + 1, 5);
is(scalar(deliveries_since($m)), 1, '... and the push follows');

# --- raw ids that do not fit a tag as they are

my $PHONE = '4:+14255550123';
my $TEAMS = '8:orgid:9C3E1DA2-3B4A-4B6F-8C2A-1F2E3D4C5B6A';
for my $raw ($PHONE, $TEAMS) {
    is((reg($A, PUT => $raw, 'phone', platform => 'fcmv1', handle => 'tok-' . length $raw))[0], 200,
       "PUT for $raw: 200");
    my $i = $nh->installation('acs-push', install_id($raw, 'phone'));
    ok((grep { $_ eq tag_of($raw) } @{ $i->{tags} // [] }), "... tagged " . tag_of($raw));
    ($st, $h, $b) = reg($B2, GET => $raw, 'phone');
    is((eval { decode_json($b) } // {})->{rawId}, $raw, '... read back through the other node');
    (my $to_raw = $chat) =~ s/\Q$BOB\E/$raw/g;
    $to_raw =~ s/"id"\s*:\s*"([^"]+)"/"id": "$1-$raw"/;
    $m = entries_mark();
    ($st) = $B2->request(POST => '/eg', $to_raw, { %AcsTest::Dispatch::EG });
    is_deeply([map { $_->{installation_id} } deliveries_since($m)], [install_id($raw, 'phone')],
              '... and reached by its tag');
}
is(tag_of($PHONE), 'u:4:#2b14255550123', 'a phone number\'s + is escaped');

my $long = '8:acs:' . ('x' x 120);
($st, $h, $b) = reg($A, PUT => $long, 'd1', platform => 'fcmv1', handle => 'tok');
is($st, 400, 'a raw id whose tag would pass 120 characters: 400');
like($b, qr/InvalidRawId/, '... InvalidRawId');

# --- what a hub registry cannot do

($st, $h, $b) = reg($A, PUT => $BOB, 'ttl', platform => 'fcmv1', handle => 'tok', ttlSeconds => 3600);
is($st, 400, 'ttlSeconds: 400');
like($b, qr/InvalidTtl/, '... InvalidTtl, never a promise that cannot be kept');
($st, $h, $b) = reg($A, PUT => $BOB, 'win', platform => 'wns', handle => 'https://wns.example/ch');
is($st, 400, 'a platform the registry does not push to: 400');
($st, $h, $b) = reg($A, GET => $BOB, '');
$b = '' unless defined $b;
is($st, 501, 'listing a user\'s devices: 501');
like($b, qr/NotImplemented/, '... NotImplemented');
is((reg($A, DELETE => $BOB, undef))[0], 501, 'deleting all of a user\'s devices: 501');

# --- the hub refuses for a while: 503 with Retry-After, nothing written

$nh->set_rules([{ installation => install_id($BOB, 'later'), status => 503, retry_after => 7 }]);
($st, $h, $b) = reg($A, PUT => $BOB, 'later', platform => 'fcmv1', handle => 'tok-later');
is($st, 503, 'NH answers 503 to the PUT: 503');
is($h->{'retry-after'}, '7', '... with NH\'s Retry-After');
ok(!$nh->installation('acs-push', install_id($BOB, 'later')), '... and no installation');
$nh->set_rules([]);

# --- the hub does not answer a PUT: 503 after the hub's timeout (2s)

$nh->set_rules([{ installation => install_id($BOB, 'hung'), status => 'hang' }]);
($st, $h, $b) = reg($A, PUT => $BOB, 'hung', platform => 'fcmv1', handle => 'tok-hung');
is($st, 503, 'NH does not answer a PUT: 503');
ok($h->{'retry-after'}, '... with Retry-After');
like($A->new_log, qr/\[error\].*no answer from Notification Hubs "main"/, '... logged');
$nh->set_rules([]);

# --- a tag send refused once is retried

$nh->set_rules([{ tags => tag_of($BOB), format => 'gcm', status => 503, times => 1 },
                { tags => tag_of($BOB), format => 'fcmv1', status => 503, times => 1 }]);
$m = entries_mark();
(my $chat5 = $chat) =~ s/"id"\s*:\s*"([^"]+)"/"id": "$1-fifth"/;
($st) = $A->request(POST => '/eg', $chat5, { %AcsTest::Dispatch::EG });
is($st, 200, 'a tag send answered 503 once: the delivery still gets 200');
my @fcm = grep { ($_->{op} // '') eq 'tag-send' && ($_->{format} // '') =~ /^(gcm|fcmv1)$/ }
          do { my @e = $nh->entries; @e[$m .. $#e] };
is(scalar @fcm, 2, '... the FCM send was made twice');
is(scalar(grep { $_->{platform} eq 'fcmv1' } deliveries_since($m)), 0,
   '... (the phone was deleted above: the retry reaches nobody, NH answers 201)');
$nh->set_rules([]);

# --- a rule without Listen: 502 and one [error]

$B2->stop;
my $C = AcsTest::Server->new('500-hub-c');
conf($C, conn => 'nh-send.conn');
my ($ok, $out) = $C->test_conf;
like($out, qr/looks like a Send-only rule/, 'nginx -t: the rule looks like Send only') or diag $out;
$C->start;
$C->new_log;
($st, $h, $b) = reg($C, PUT => $BOB, 'sendonly', platform => 'fcmv1', handle => 'tok-send');
is($st, 502, 'PUT with a Send-only rule: 502');
my @err = grep { /\[error\]/ } split /\n/, $C->new_log;
is(scalar @err, 1, '... one [error]');
like($err[0] // '', qr/needs the Listen right/, '... that names the cause');
$C->stop;

# --- configuration mistakes

my $D = AcsTest::Server->new('500-hub-d');
$D->write_conf(http => "acs_notify_registry main=1;");
($ok, $out) = $D->test_conf;
ok(!$ok, 'a registry path with "=": refused');
like($out, qr/is taken for a parameter, not a directory/, '... clearly');
$D->write_conf(http => $t->hubs_conf =~ s{acs_notify_registry [^;]*;}{acs_notify_registry hub=nosuch;}r);
($ok, $out) = $D->test_conf;
like($out, qr/no acs_notify_hub "nosuch"/, 'hub= naming no hub: refused');
$D->write_conf(http => $t->hubs_conf =~ s{acs_notify_registry [^;]*;}{acs_notify_registry hub=main ttl=1h;}r);
($ok, $out) = $D->test_conf;
like($out, qr/ttl=, max_size= and max_devices= are those of a registry on disk/, 'ttl= with hub=: refused');
$D->write_conf(http => http_conf(),
               server => 'location = /eg { acs_notify_eventgrid hub=listen; }');
($ok, $out) = $D->test_conf;
like($out, qr/pushes go through hub=main, not "listen"/, 'a location sending through another hub: refused');

$A->stop;
unlike($A->whole_log . $B->whole_log . $B2->whole_log, qr/\[(alert|crit)\]/, 'no [alert] or [crit]');

done_testing;
